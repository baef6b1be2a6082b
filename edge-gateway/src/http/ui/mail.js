// The Stratus webmail: a JMAP client (RFC 8620, 8621) on the web session.
// The page is built with DOM calls and textContent only, never from
// markup, so subjects, names and addresses stay text whatever they hold.
// HTML mail is never put in this page: it is shown in a sandboxed frame
// from /jmap/html/, sanitised by the server and under its own policy.
// Every JMAP request carries the session's CSRF token.

const CORE = "urn:ietf:params:jmap:core";
const MAIL = "urn:ietf:params:jmap:mail";
const SUBMISSION = "urn:ietf:params:jmap:submission";
const PAGE = 200;

let session = null; // the web session (address, csrf_token)
let jmap = null; // the JMAP session resource
let account = null;
let mailboxes = [];
let current = null; // the mailbox shown (null while searching)
let query = ""; // the search, when searching
let emails = []; // the list shown, newest first
let picked = -1; // the index of the Email open
let identity = null;
let events = null;

class Failure extends Error {}

async function http(method, path, body, type) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = type || "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : (type ? body : JSON.stringify(body)),
    credentials: "same-origin",
  });
  const kind = r.headers.get("content-type") || "";
  const data = kind.includes("json") ? await r.json() : null;
  if (r.status === 401 && session && path !== "/api/v1/session") {
    session = null;
    say("Your session has ended; sign in again.", "error");
    signIn();
  }
  if (!r.ok) throw new Failure((data && (data.detail || data.title)) || r.statusText);
  return data;
}

/// Runs JMAP method calls; answers by call id. A method error throws.
/// Requests go one at a time (the server allows a few at once per
/// account; keys pressed quickly would pass that).
let queue = Promise.resolve();
function call(...calls) {
  const run = queue.then(() => send(calls));
  queue = run.catch(() => {});
  return run;
}

/// Like `call`, but skipped when its turn comes if `stale()` says a later
/// request has made it useless (a search typed further).
class Stale extends Error {}
function callUnlessStale(stale, ...calls) {
  const run = queue.then(() => (stale() ? Promise.reject(new Stale()) : send(calls)));
  queue = run.catch(() => {});
  return run;
}

async function send(calls) {
  const r = await http("POST", jmap.apiUrl, {
    using: [CORE, MAIL, SUBMISSION],
    methodCalls: calls.map(([name, args], i) => [name, { accountId: account, ...args }, String(i)]),
  });
  const out = [];
  for (const [name, result] of r.methodResponses) {
    if (name === "error") throw new Failure(`${result.type}: ${result.description || ""}`);
    out.push(result);
  }
  return out;
}

/// An element: h("p", {class: "x"}, "text", child, ...). Strings become
/// text nodes; `on…` attributes are listeners.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(text, kind) {
  document.getElementById("status").replaceChildren(text ? h("p", { class: kind || "ok" }, text) : "");
}

/// Runs `f`, telling the user what went wrong instead of throwing.
async function safely(f) {
  try {
    await f();
  } catch (e) {
    say(e.message, "error");
  }
}

function names(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}

function short(list) {
  return (list || []).map((a) => a.name || a.email).join(", ");
}

function when(date) {
  if (!date) return "";
  const d = new Date(date);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString();
}

function role(r) {
  return mailboxes.find((m) => m.role === r);
}

// ---- Signing in -------------------------------------------------------------

function signIn() {
  if (events) events.close();
  const main = document.getElementById("main");
  main.className = "signin";
  for (const id of ["search", "compose"]) document.getElementById(id).hidden = true;
  document.getElementById("who").replaceChildren();
  const form = h("form", { class: "stack", "aria-label": "Sign in" },
    h("h1", {}, "Sign in"),
    h("label", {}, "Address", h("input", { name: "address", type: "email", autocomplete: "username", required: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    safely(async () => {
      const v = Object.fromEntries(new FormData(form));
      session = await http("POST", "/api/v1/session", { address: v.address, password: v.password });
      say("");
      await start();
    });
  });
  main.replaceChildren(form);
  form.querySelector("input").focus();
}

async function start() {
  jmap = await http("GET", "/.well-known/jmap");
  account = jmap.primaryAccounts[MAIL];
  const [ids] = await call(["Identity/get", {}]);
  identity = ids.list[0];
  const main = document.getElementById("main");
  main.className = "";
  main.replaceChildren(
    h("nav", { id: "boxes", "aria-label": "Mailboxes" }),
    h("ul", { id: "list", role: "listbox", "aria-label": "Messages", tabindex: "0" }),
    h("section", { id: "reader", "aria-label": "Message" }, h("p", { class: "note" }, "Pick a message.")));
  for (const id of ["search", "compose"]) document.getElementById(id).hidden = false;
  document.getElementById("who").replaceChildren(
    h("span", {}, session.address),
    h("button", { type: "button", onclick: () => safely(signOut) }, "Sign out"));
  await loadMailboxes();
  current = role("inbox")?.id || mailboxes[0]?.id;
  await loadList();
  listen();
}

async function signOut() {
  await http("DELETE", "/api/v1/session");
  session = null;
  signIn();
}

// ---- Mailboxes and the list ---------------------------------------------------

async function loadMailboxes() {
  const [r] = await call(["Mailbox/get", { properties: ["name", "role", "sortOrder", "unreadEmails", "totalEmails", "parentId"] }]);
  mailboxes = r.list.sort((a, b) => a.sortOrder - b.sortOrder || a.name.localeCompare(b.name));
  drawMailboxes();
}

function drawMailboxes() {
  const nav = document.getElementById("boxes");
  if (!nav) return;
  nav.replaceChildren(...mailboxes.map((m) =>
    h("button", {
      type: "button",
      "aria-current": String(m.id === current && !query),
      "data-role": m.role || "",
      onclick: () => safely(async () => {
        current = m.id;
        query = "";
        document.getElementById("search").value = "";
        picked = -1;
        await loadList();
      }),
    }, h("span", {}, m.name), m.unreadEmails ? h("span", { class: "count" }, m.unreadEmails) : "")));
}

const LIST_PROPERTIES = ["threadId", "mailboxIds", "keywords", "from", "to", "subject", "receivedAt", "preview", "hasAttachment"];

let listing = 0;
async function loadList() {
  const filter = query ? { text: query } : { inMailbox: current };
  const started = performance.now();
  const mine = ++listing;
  let answers;
  try {
    answers = await callUnlessStale(() => mine !== listing,
    ["Email/query", { filter, sort: [{ property: "receivedAt", isAscending: false }], collapseThreads: !query, limit: PAGE }],
    ["Email/get", { "#ids": { resultOf: "0", name: "Email/query", path: "/ids" }, properties: LIST_PROPERTIES }]);
  } catch (e) {
    if (e instanceof Stale) return;
    throw e;
  }
  // A later listing was asked for while this one ran: it will draw.
  if (mine !== listing) return;
  const got = answers[1];
  const keep = picked >= 0 ? emails[picked]?.id : null;
  emails = got.list;
  picked = keep ? emails.findIndex((e) => e.id === keep) : -1;
  drawList();
  drawMailboxes();
  document.body.dataset.listMs = String(Math.round(performance.now() - started));
}

function drawList() {
  const list = document.getElementById("list");
  if (!list) return;
  if (!emails.length) {
    list.replaceChildren(h("li", { class: "empty" }, query ? "Nothing matches." : "No messages here."));
    return;
  }
  list.replaceChildren(...emails.map((e, i) => {
    const unread = !e.keywords?.$seen;
    return h("li", {
      role: "option",
      class: unread ? "unread" : "",
      "aria-selected": String(i === picked),
      "data-id": e.id,
      onclick: () => safely(() => open(i)),
    },
    h("span", { class: "from" }, short(e.from) || "(nobody)"),
    h("span", { class: "date" }, e.keywords?.$flagged ? h("span", { class: "flag", title: "Flagged" }, "★ ") : "", when(e.receivedAt)),
    h("span", { class: "subject" }, e.subject || "(no subject)", e.hasAttachment ? " 📎" : ""),
    h("span", { class: "preview" }, e.preview || ""));
  }));
}

// ---- Reading ------------------------------------------------------------------

async function open(i) {
  if (i < 0 || i >= emails.length) return;
  picked = i;
  drawList();
  document.querySelector(`#list li[data-id="${CSS.escape(emails[i].id)}"]`)?.scrollIntoView({ block: "nearest" });
  const e = emails[i];
  const [thread] = await call(["Thread/get", { ids: [e.threadId] }]);
  const ids = thread.list[0]?.emailIds || [e.id];
  const [got] = await call(["Email/get", {
    ids,
    properties: [...LIST_PROPERTIES, "cc", "replyTo", "messageId", "references", "textBody", "htmlBody", "attachments", "bodyValues"],
    fetchTextBodyValues: true,
  }]);
  const messages = got.list;
  const unread = messages.filter((m) => !m.keywords?.$seen).map((m) => m.id);
  if (unread.length) {
    await call(["Email/set", { update: Object.fromEntries(unread.map((id) => [id, { "keywords/$seen": true }])) }]);
    e.keywords = { ...(e.keywords || {}), $seen: true };
    drawList();
  }
  const last = messages[messages.length - 1] || e;
  const reader = document.getElementById("reader");
  document.getElementById("main").classList.add("reading");
  reader.replaceChildren(
    h("div", { class: "actions" },
      h("button", { type: "button", class: "back", onclick: () => document.getElementById("main").classList.remove("reading") }, "← Back"),
      h("button", { type: "button", onclick: () => safely(() => compose("reply", last)) }, "Reply (r)"),
      h("button", { type: "button", onclick: () => safely(() => compose("all", last)) }, "Reply all (a)"),
      h("button", { type: "button", onclick: () => safely(() => compose("forward", last)) }, "Forward (f)"),
      h("button", { type: "button", onclick: () => safely(() => toggle("$flagged")) }, e.keywords?.$flagged ? "Unflag" : "Flag"),
      h("button", { type: "button", onclick: () => safely(() => toggle("$seen")) }, "Mark unread"),
      h("button", { type: "button", onclick: () => safely(() => moveTo("archive")) }, "Archive (e)"),
      inRole(e, "junk")
        ? h("button", { type: "button", onclick: () => safely(() => moveTo("inbox")) }, "Not spam")
        : h("button", { type: "button", onclick: () => safely(() => moveTo("junk")) }, "Spam"),
      h("button", { type: "button", onclick: () => safely(() => moveTo("trash")) }, "Delete (#)")),
    h("h2", {}, e.subject || "(no subject)"),
    ...messages.map(drawMessage));
}

function inRole(e, r) {
  const box = role(r);
  return box && e.mailboxIds && e.mailboxIds[box.id];
}

function drawMessage(m) {
  const attachments = (m.attachments || []).filter((a) => a.blobId);
  const body = h("div", { class: "body" });
  if ((m.htmlBody || []).some((p) => p.type === "text/html")) {
    // The server's sanitised copy, in a frame that may run nothing and
    // reach nothing of this page.
    body.append(h("iframe", {
      sandbox: "allow-popups allow-popups-to-escape-sandbox",
      referrerpolicy: "no-referrer",
      title: `Message from ${short(m.from)}`,
      src: `/jmap/html/${encodeURIComponent(account)}/${encodeURIComponent(m.id)}`,
    }));
  } else {
    const text = (m.textBody || []).map((p) => m.bodyValues?.[p.partId]?.value || "").join("\n");
    body.append(h("pre", { class: "text" }, text));
  }
  return h("article", { class: "message", "data-id": m.id },
    h("div", { class: "meta" },
      h("strong", {}, names(m.from)), " — ", when(m.receivedAt),
      h("br"), "To: ", names(m.to),
      m.cc?.length ? [h("br"), "Cc: ", names(m.cc)] : ""),
    body,
    attachments.length
      ? h("p", { class: "attachments" }, "Attachments: ", ...attachments.map((a) => h("a", {
        href: jmap.downloadUrl
          .replace("{accountId}", encodeURIComponent(account))
          .replace("{blobId}", encodeURIComponent(a.blobId))
          .replace("{name}", encodeURIComponent(a.name || "attachment"))
          .replace("{type}", encodeURIComponent(a.type || "application/octet-stream")),
        download: a.name || "attachment",
      }, a.name || "attachment")))
      : "");
}

async function toggle(keyword) {
  const e = emails[picked];
  if (!e) return;
  const on = !e.keywords?.[keyword];
  await call(["Email/set", { update: { [e.id]: { [`keywords/${keyword}`]: on ? true : null } } }]);
  e.keywords = { ...(e.keywords || {}), [keyword]: on };
  if (!on) delete e.keywords[keyword];
  drawList();
  if (keyword === "$flagged") await open(picked);
}

/// Moves the open message (its whole thread in this mailbox) to the
/// mailbox of `r`.
async function moveTo(r) {
  const e = emails[picked];
  const target = role(r);
  if (!e || !target) return;
  await call(["Email/set", { update: { [e.id]: { mailboxIds: { [target.id]: true } } } }]);
  say(`Moved to ${target.name}.`);
  const next = Math.min(picked, emails.length - 2);
  picked = -1;
  await loadList();
  await loadMailboxes();
  if (next >= 0 && emails.length) await open(Math.min(next, emails.length - 1));
  else document.getElementById("reader").replaceChildren(h("p", { class: "note" }, "Pick a message."));
}

// ---- Writing ------------------------------------------------------------------

let draftId = null;
let saving = null;
let attached = [];

function quote(m) {
  const text = (m.textBody || []).map((p) => m.bodyValues?.[p.partId]?.value || "").join("\n");
  return `\n\nOn ${new Date(m.receivedAt).toLocaleString()}, ${short(m.from)} wrote:\n` +
    text.split("\n").map((l) => `> ${l}`).join("\n");
}

function addresses(text) {
  return text.split(/[,;]/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = s.match(/^(.*)<([^>]+)>$/);
    return m ? { name: m[1].trim().replace(/^"|"$/g, "") || null, email: m[2].trim() } : { name: null, email: s };
  });
}

function compose(kind, m) {
  document.getElementById("composer")?.remove();
  draftId = null;
  attached = [];
  const subject = m?.subject || "";
  const re = (p) => (subject.toLowerCase().startsWith(p.toLowerCase()) ? subject : `${p} ${subject}`);
  let to = "";
  let cc = "";
  let subj = "";
  let text = "";
  if (kind === "reply" || kind === "all") {
    to = names(m.replyTo?.length ? m.replyTo : m.from);
    if (kind === "all") {
      const me = session.address.toLowerCase();
      cc = names([...(m.to || []), ...(m.cc || [])].filter((a) => a.email.toLowerCase() !== me));
    }
    subj = re("Re:");
    text = quote(m);
  } else if (kind === "forward") {
    subj = re("Fwd:");
    text = quote(m);
    attached = (m.attachments || []).filter((a) => a.blobId).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name }));
  }
  const files = h("span", { class: "files" });
  const drawFiles = () => files.replaceChildren(...attached.map((a) => h("span", {}, `📎 ${a.name} `)));
  drawFiles();
  const upload = async (list) => {
    for (const file of list) {
      say(`Uploading ${file.name}…`);
      const url = jmap.uploadUrl.replace("{accountId}", encodeURIComponent(account));
      const r = await http("POST", url, file, file.type || "application/octet-stream");
      attached.push({ blobId: r.blobId, type: r.type, name: file.name });
      drawFiles();
      say("");
    }
    save();
  };
  const picker = h("input", { type: "file", multiple: true, "aria-label": "Attach files" });
  picker.addEventListener("change", () => safely(() => upload(picker.files)));
  const drop = h("div", { class: "drop" }, "Drop files here to attach them, or ", picker, files);
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    safely(() => upload(ev.dataTransfer.files));
  });
  const form = h("form", { id: "composer", class: "stack", "aria-label": "New message" },
    h("label", {}, "To", h("input", { name: "to", value: to, autocomplete: "off" })),
    h("label", {}, "Cc", h("input", { name: "cc", value: cc, autocomplete: "off" })),
    h("label", {}, "Subject", h("input", { name: "subject", value: subj })),
    h("textarea", { name: "body", "aria-label": "Message" }, text),
    drop,
    h("div", { class: "row" },
      h("button", { class: "primary", type: "submit" }, "Send"),
      h("button", { type: "button", onclick: () => safely(discard) }, "Discard"),
      h("span", { class: "note", id: "draft-state" }, "")));
  const draft = () => {
    const v = Object.fromEntries(new FormData(form));
    const drafts = role("drafts");
    const email = {
      mailboxIds: { [drafts.id]: true },
      keywords: { $draft: true, $seen: true },
      from: [{ name: identity.name || null, email: identity.email }],
      to: addresses(v.to),
      subject: v.subject,
      textBody: [{ partId: "t", type: "text/plain" }],
      bodyValues: { t: { value: v.body } },
    };
    if (v.cc.trim()) email.cc = addresses(v.cc);
    if (attached.length) email.attachments = attached.map((a) => ({ ...a, disposition: "attachment" }));
    if (m && kind !== "forward" && m.messageId) {
      email.inReplyTo = m.messageId;
      email.references = [...(m.references || []), ...m.messageId];
    }
    return email;
  };
  // Drafts are saved as you type: each save replaces the last.
  let timer = null;
  const save = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      saving = safely(async () => {
        const previous = draftId;
        const [r] = await call(["Email/set", { create: { d: draft() }, destroy: previous ? [previous] : [] }]);
        draftId = r.created?.d?.id || null;
        document.getElementById("draft-state").textContent = draftId ? "Draft saved." : "";
      });
    }, 800);
  };
  form.addEventListener("input", save);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    safely(async () => {
      clearTimeout(timer);
      await saving;
      const drafts = role("drafts");
      const sent = role("sent");
      const previous = draftId;
      const [made, submitted] = await call(
        ["Email/set", { create: { d: draft() }, destroy: previous ? [previous] : [] }],
        ["EmailSubmission/set", {
          create: { s: { emailId: "#d", identityId: identity.id } },
          onSuccessUpdateEmail: { "#s": { [`mailboxIds/${drafts.id}`]: null, [`mailboxIds/${sent.id}`]: true, "keywords/$draft": null } },
        }]);
      if (!made.created?.d) throw new Failure(`not saved: ${JSON.stringify(made.notCreated)}`);
      if (!submitted.created?.s) {
        const why = Object.values(submitted.notCreated || {})[0];
        draftId = made.created.d.id;
        throw new Failure(`not sent: ${why ? why.description || why.type : "refused"}`);
      }
      if (m && (kind === "reply" || kind === "all")) {
        await call(["Email/set", { update: { [m.id]: { "keywords/$answered": true } } }]);
      }
      draftId = null;
      form.remove();
      say("Sent.");
      await loadMailboxes();
      await loadList();
    });
  });
  document.body.append(form);
  form.querySelector(kind === "reply" || kind === "all" ? "textarea" : "input").focus();
}

async function discard() {
  await saving;
  if (draftId) await call(["Email/set", { destroy: [draftId] }]);
  draftId = null;
  document.getElementById("composer")?.remove();
}

// ---- Search, keys, push -------------------------------------------------------

let searchTimer = null;
document.getElementById("search").addEventListener("input", (ev) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => safely(async () => {
    query = ev.target.value.trim();
    picked = -1;
    await loadList();
  }), 250);
});
document.getElementById("compose").addEventListener("click", () => safely(() => compose("new")));

document.addEventListener("keydown", (ev) => {
  if (!jmap || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target.closest("input, textarea, select, [contenteditable]");
  if (typing) {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  const keys = {
    j: () => open(Math.min(picked + 1, emails.length - 1)),
    k: () => open(Math.max(picked - 1, 0)),
    r: () => picked >= 0 && compose("reply", emails[picked]),
    a: () => picked >= 0 && compose("all", emails[picked]),
    f: () => picked >= 0 && compose("forward", emails[picked]),
    c: () => compose("new"),
    e: () => moveTo("archive"),
    "#": () => moveTo("trash"),
    "/": () => document.getElementById("search").focus(),
  };
  const f = keys[ev.key];
  if (!f) return;
  ev.preventDefault();
  safely(async () => {
    // Replies quote the whole message: open it first.
    if ("raf".includes(ev.key) && picked >= 0) {
      const [got] = await call(["Email/get", {
        ids: [emails[picked].id],
        properties: [...LIST_PROPERTIES, "cc", "replyTo", "messageId", "references", "textBody", "attachments", "bodyValues"],
        fetchTextBodyValues: true,
      }]);
      compose({ r: "reply", a: "all", f: "forward" }[ev.key], got.list[0]);
      return;
    }
    await f();
  });
});

/// New mail and changes from elsewhere, pushed (EventSource on the web
/// session's cookie): the list and the counts follow without a reload.
function listen() {
  if (events) events.close();
  events = new EventSource("/jmap/eventsource?types=Email,Mailbox&closeafter=no&ping=60");
  let pending = null;
  events.addEventListener("state", () => {
    clearTimeout(pending);
    pending = setTimeout(() => safely(async () => {
      await loadMailboxes();
      await loadList();
    }), 150);
  });
}

safely(async () => {
  try {
    session = await http("GET", "/api/v1/session");
  } catch {
    signIn();
    return;
  }
  await start();
});
