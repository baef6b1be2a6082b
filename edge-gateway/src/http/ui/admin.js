// The Stratus admin pages: a small client of the admin API (/api/v1).
// Everything on the page is built with DOM calls and textContent, never
// from markup, so names and subjects stay text whatever they hold.
// Changes carry the session's CSRF token (X-CSRF-Token).

let session = null;

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401 && session && path !== "/api/v1/session") {
      session = null;
      say("Your session has ended; sign in again.", "error");
      route();
    }
    throw new ApiError((data && (data.detail || data.title)) || r.statusText, r.status);
  }
  return data;
}

/// Every item of a paged list.
async function all(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", path + (cursor ? `${sep}cursor=${encodeURIComponent(cursor)}&limit=1000` : `${sep}limit=1000`));
    items.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return items;
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
  const status = document.getElementById("status");
  status.replaceChildren(text ? h("p", { class: kind || "ok" }, text) : "");
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "";
}

function bytes(n) {
  if (n === null || n === undefined) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

function table(caption, columns, rows) {
  if (rows.length === 0) return h("p", { class: "empty" }, `No ${caption.toLowerCase()} yet.`);
  return h("div", { class: "scroll" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))))));
}

/// A form whose submit calls `action(values)`; errors are shown, and the
/// form is reset when it worked.
function form(label, fields, submit, action) {
  const inputs = {};
  const el = h("form", { class: "inline", "aria-label": label },
    fields.map((f) => {
      const id = `f-${label}-${f.name}`.replace(/\W+/g, "-");
      const input = f.options
        ? h("select", { id, name: f.name }, f.options.map((o) => h("option", { value: o[0] }, o[1])))
        : h("input", {
          id, name: f.name, type: f.type || "text", required: f.required !== false,
          placeholder: f.placeholder || "", autocomplete: f.autocomplete || "off",
        });
      inputs[f.name] = input;
      return h("label", { for: id }, h("span", {}, f.label), input);
    }),
    h("button", { type: "submit" }, submit));
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = {};
    // Passwords as typed: spaces at either end are part of them.
    for (const [k, input] of Object.entries(inputs)) {
      values[k] = input.type === "password" ? input.value : input.value.trim();
    }
    const button = el.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await action(values);
      el.reset();
    } catch (err) {
      say(err.message, "error");
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function button(text, action, kind) {
  return h("button", {
    type: "button", class: kind || "",
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        await action();
      } catch (err) {
        say(err.message, "error");
      } finally {
        e.target.disabled = false;
      }
    },
  }, text);
}

/// A button that asks `question`, then DELETEs `path`, says `done` and
/// shows the view again.
function remove(label, question, path, done, refresh) {
  return button(label, async () => {
    if (!confirm(question)) return;
    await api("DELETE", path);
    say(done);
    refresh();
  }, "danger");
}

/// Something shown once (a key, an app password): selectable, with a note.
function once(label, secret) {
  return h("div", { class: "once", role: "alert" },
    h("p", {}, `${label} (shown only now; copy it):`),
    h("code", { tabindex: "0" }, secret));
}

function page(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", {}, title), ...children);
  document.title = `${title} · Stratus admin`;
}

// ---- Views ----------------------------------------------------------------

function signIn() {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").replaceChildren();
  page("Sign in",
    form("Sign in", [
      { name: "address", label: "Address", type: "email", autocomplete: "username" },
      { name: "password", label: "Password", type: "password", autocomplete: "current-password" },
    ], "Sign in", async (v) => {
      session = await api("POST", "/api/v1/session", { address: v.address, password: v.password });
      say("");
      // A new hash routes by itself (hashchange); routing here as well
      // drew the page twice, and a form filled in the first was gone.
      const to = session.admin ? "#/domains" : "#/account";
      if (!location.hash || location.hash === "#/") location.hash = to;
      else route();
    }));
  document.querySelector("#main input")?.focus();
}

async function domains() {
  const list = await all("/api/v1/domains");
  const render = () => domains();
  page("Domains",
    table("Domains", ["Domain", "", ""], list.map((d) => [
      d.unicode ? `${d.unicode} (${d.name})` : d.name,
      h("a", { href: `#/dns/${encodeURIComponent(d.name)}` }, "DNS records"),
      session.admin.role === "admin"
        ? remove("Delete", `Delete the domain ${d.name}? Its users, aliases and lists must be gone.`, `/api/v1/domains/${encodeURIComponent(d.name)}`, `Deleted ${d.name}.`, render)
        : "",
    ])),
    session.admin.role === "admin"
      ? form("Add a domain", [{ name: "name", label: "Domain", placeholder: "example.org" }], "Add domain", async (v) => {
        const added = await api("POST", "/api/v1/domains", { name: v.name });
        say(`Added ${added.domain.name}. Publish its DNS records next.`);
        location.hash = `#/dns/${encodeURIComponent(added.domain.name)}`;
      })
      : "");
}

async function dns(name) {
  const records = await api("GET", `/api/v1/domains/${encodeURIComponent(name)}/dns?check=true`);
  const mark = (r) => {
    if (r.published === true) return h("span", { class: "good", title: "published" }, "✔ published");
    if (r.published === false) {
      return h("span", { class: "bad" }, "✘ not published",
        r.found.map((f) => h("small", { class: "found" }, `found: ${f}`)));
    }
    return h("span", { class: "unknown" }, `? the lookup failed: ${r.error || "unknown"}`);
  };
  const path = `/api/v1/domains/${encodeURIComponent(name)}`;
  const [info, dkim, spam] = await Promise.all([
    api("GET", path), api("GET", `${path}/dkim`), api("GET", `/api/v1/spam/${encodeURIComponent(name)}`),
  ]);
  const refresh = () => dns(name);
  const next = dkim.items.filter((k) => k.state === "next");
  page(`DNS records of ${name}`,
    h("p", {}, "Publish these records at your DNS provider. The check looks them up now."),
    table("Records", ["Purpose", "Name", "Type", "Value", "Check"], records.items.map((r) => [
      r.purpose, r.name, r.kind, h("code", {}, r.value), mark(r),
    ])),
    h("h2", {}, "DKIM keys"),
    h("p", {}, "Active keys sign. To rotate, make the next keys, publish their records, then activate them; the old keys retire but stay published for a week."),
    table("DKIM keys", ["Selector", "Algorithm", "State", "Made", ""], dkim.items.map((k) => [
      h("code", {}, k.selector), k.algorithm,
      k.state === "retired" ? `retired ${when(k.retired)}` : k.state,
      when(k.created),
      k.state === "active" ? "" : remove("Drop", `Drop the key ${k.selector}? Remove its record from the DNS too.`,
        `${path}/dkim/${encodeURIComponent(k.selector)}`, `Dropped ${k.selector}.`, refresh),
    ])),
    h("p", { class: "actions" },
      next.length
        ? button("Activate the next keys", async () => {
          await api("POST", `${path}/dkim/activate`, {});
          say(`${name} signs with its new keys.`);
          refresh();
        })
        : button("Rotate: make the next keys", async () => {
          await api("POST", `${path}/dkim/rotate`);
          say("Made the next keys: publish their records (above), then activate them.");
          refresh();
        })),
    h("h2", {}, "Catch-all"),
    h("p", {}, info.catch_all
      ? `Mail for addresses nobody has at ${name} goes to ${info.catch_all}.`
      : `Mail for addresses nobody has at ${name} is refused.`),
    form("Set the catch-all", [{ name: "target", label: "Deliver to", type: "email", placeholder: `postmaster@${name}` }],
      "Set catch-all", async (v) => {
        await api("PUT", `${path}/catch-all`, { target: v.target });
        say(`Catch-all of ${name} set.`);
        refresh();
      }),
    info.catch_all ? remove("Remove catch-all", `Refuse mail for unknown addresses at ${name} again?`, `${path}/catch-all`, "Catch-all removed.", refresh) : "",
    h("h2", {}, "Spam thresholds"),
    h("p", {}, `Junk at ${spam.junk ?? "the default"}, refused at ${spam.reject ?? "the default"} (for every user of ${name} without their own).`),
    form("Spam thresholds", [
      { name: "junk", label: "Junk at", type: "number", required: false, placeholder: "default" },
      { name: "reject", label: "Refuse at", type: "number", required: false, placeholder: "default" },
    ], "Set thresholds", async (v) => {
      const num = (x) => (x === "" ? null : Number(x));
      await api("PATCH", `/api/v1/spam/${encodeURIComponent(name)}`, { junk: num(v.junk), reject: num(v.reject) });
      say(`Spam thresholds of ${name} set.`);
      refresh();
    }),
    h("p", {}, h("a", { href: "#/domains" }, "Back to domains")));
}

async function users() {
  const domainList = await all("/api/v1/domains");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const domain = params.get("domain") || "";
  const list = await all(`/api/v1/users${domain ? `?domain=${encodeURIComponent(domain)}` : ""}`);
  const filter = h("select", { id: "domain-filter", "aria-label": "Domain" },
    h("option", { value: "" }, "All domains"),
    domainList.map((d) => h("option", { value: d.name, selected: d.name === domain }, d.name)));
  filter.addEventListener("change", () => {
    location.hash = filter.value ? `#/users?domain=${encodeURIComponent(filter.value)}` : "#/users";
  });
  const refresh = () => users();
  page("Users",
    h("p", {}, h("label", { for: "domain-filter" }, "Show "), filter),
    table("Users", ["Address", "Quota", "Used", "State", "Role", ""], list.map((u) => [
      h("a", { href: `#/user/${encodeURIComponent(u.address)}` }, u.address),
      bytes(u.quota),
      bytes(u.used),
      u.disabled ? h("span", { class: "bad" }, "disabled") : "active",
      u.admin ? (u.admin.role === "admin" ? "admin" : `domain admin: ${u.admin.domains.join(", ")}`) : "",
      userActions(u, refresh),
    ])),
    h("h2", {}, "Invite a user"),
    h("p", {}, "They choose their own password with a link you send them."),
    form("Invite a user", [
      { name: "address", label: "Address", type: "email", placeholder: "ann@example.org" },
      { name: "quota", label: "Quota", placeholder: "1G (empty: unlimited)", required: false },
    ], "Invite", async (v) => {
      const body = { address: v.address, invite: true };
      if (v.quota) body.quota = v.quota;
      const u = await api("POST", "/api/v1/users", body);
      await users();
      document.getElementById("main").append(once(`Invitation link for ${u.address} (it works once, for 7 days)`, u.invitation.url));
    }),
    h("h2", {}, "Add a user"),
    form("Add a user", [
      { name: "address", label: "Address", type: "email", placeholder: "ann@example.org" },
      { name: "password", label: "Password", type: "password", autocomplete: "new-password" },
      { name: "quota", label: "Quota", placeholder: "1G (empty: unlimited)", required: false },
    ], "Add user", async (v) => {
      const body = { address: v.address, password: v.password };
      if (v.quota) body.quota = v.quota;
      const u = await api("POST", "/api/v1/users", body);
      say(`Added ${u.address}.`);
      refresh();
    }));
}

function userActions(u, refresh) {
  const path = `/api/v1/users/${encodeURIComponent(u.address)}`;
  const patch = async (body, done) => {
    await api("PATCH", path, body);
    say(done);
    refresh();
  };
  return h("details", {},
    h("summary", {}, "Change…"),
    form(`Quota of ${u.address}`, [{ name: "quota", label: "Quota", placeholder: "1G, or none" }], "Set quota",
      (v) => patch({ quota: /^(none|unlimited)$/i.test(v.quota) ? null : v.quota }, `Quota of ${u.address} set.`)),
    form(`Password of ${u.address}`, [{ name: "password", label: "New password", type: "password", autocomplete: "new-password" }],
      "Reset password", (v) => patch({ password: v.password }, `Password of ${u.address} reset; their sessions ended.`)),
    h("p", { class: "actions" },
      u.disabled
        ? button("Enable", () => patch({ disabled: false }, `${u.address} enabled.`))
        : button("Disable", () => patch({ disabled: true }, `${u.address} disabled; their sessions ended.`), "danger"),
      button("New invitation link", async () => {
        const inv = await api("POST", `${path}/invitation`);
        await refresh();
        document.getElementById("main").append(once(`Invitation link for ${u.address}: it sets a new password (it works once, for 7 days)`, inv.url));
      }),
      remove("Delete", `Delete ${u.address} and all their mail?`, path, `Deleted ${u.address}.`, refresh)));
}

async function user(address) {
  const path = `/api/v1/users/${encodeURIComponent(address)}`;
  const [u, boxes, fwd, ids] = await Promise.all([
    api("GET", path), all(`${path}/mailboxes`), api("GET", `${path}/forward`), all(`${path}/identities`),
  ]);
  const refresh = () => user(address);
  page(address,
    h("p", {}, `${bytes(u.used)} used of ${bytes(u.quota)}${u.disabled ? "; disabled" : ""}.`),
    table("Mailboxes", ["Mailbox", "Messages", "Unseen", "Size"], boxes.map((m) => [
      m.special_use ? `${m.name} (${m.special_use})` : m.name, String(m.messages), String(m.unseen), bytes(m.size),
    ])),
    h("h2", {}, "Forwarding"),
    h("p", {}, fwd.targets.length
      ? `Forwarded to ${fwd.targets.join(", ")}${fwd.keep ? ", with a copy kept here" : ""}.`
      : "Not forwarded."),
    form("Forward mail", [
      { name: "targets", label: "Forward to", placeholder: "ann@elsewhere.example" },
      { name: "keep", label: "Keep a copy", options: [["yes", "keep a copy"], ["no", "no copy"]] },
    ], "Forward", async (v) => {
      await api("PUT", `${path}/forward`, { targets: v.targets.split(/[\s,;]+/).filter(Boolean), keep: v.keep === "yes" });
      say(`Mail of ${address} is forwarded.`);
      refresh();
    }),
    fwd.targets.length ? remove("Stop forwarding", `Stop forwarding the mail of ${address}?`, `${path}/forward`, "Forwarding stopped.", refresh) : "",
    h("h2", {}, "Sends as"),
    table("Identities", ["Address", ""], ids.map((i) => [
      i.identity,
      remove("Take back", `Stop ${address} sending as ${i.identity}?`, `${path}/identities/${encodeURIComponent(i.identity)}`, `Taken back: ${i.identity}.`, refresh),
    ])),
    form("Let them send as", [{ name: "address", label: "Address", type: "email", placeholder: "sales@example.org" }],
      "Grant", async (v) => {
        await api("POST", `${path}/identities`, { address: v.address });
        say(`${address} may send as ${v.address}.`);
        refresh();
      }),
    h("p", {}, h("a", { href: "#/users" }, "Back to users")));
}

async function lists() {
  const list = await all("/api/v1/lists");
  const refresh = () => lists();
  page("Lists",
    table("Lists", ["List", "Who may post", "Owners", "Members", ""], list.map((l) => [
      h("a", { href: `#/list/${encodeURIComponent(l.address)}` }, l.address),
      l.policy, l.owners.join(", "), String(l.members),
      remove("Delete", `Delete the list ${l.address}, its members and held posts?`, `/api/v1/lists/${encodeURIComponent(l.address)}`, `Deleted ${l.address}.`, refresh),
    ])),
    h("h2", {}, "Add a list"),
    form("Add a list", [
      { name: "address", label: "List", type: "email", placeholder: "team@example.org" },
      { name: "policy", label: "Who may post", options: [["members", "members"], ["anyone", "anyone"], ["moderated", "moderated"]] },
      { name: "owners", label: "Owners", placeholder: "ann@example.org" },
    ], "Add list", async (v) => {
      const owners = v.owners.split(/[\s,;]+/).filter(Boolean);
      const l = await api("POST", "/api/v1/lists", { address: v.address, policy: v.policy, owners });
      say(`Added ${l.address}; bounces come back to ${l.bounces}.`);
      refresh();
    }));
}

async function listView(address) {
  const path = `/api/v1/lists/${encodeURIComponent(address)}`;
  const [l, members, held] = await Promise.all([api("GET", path), all(`${path}/members`), all(`${path}/held`)]);
  const refresh = () => listView(address);
  page(address,
    h("p", {}, `${{ anyone: "Anyone may post", members: "Members may post", moderated: "Every post waits for an owner's approval" }[l.policy]}; owners: ${l.owners.join(", ")}.`),
    table("Members", ["Address", "Bounces", ""], members.map((m) => [
      m.address,
      m.disabled ? h("span", { class: "bad" }, `disabled after ${m.bounces}`) : String(m.bounces),
      remove("Unsubscribe", `Unsubscribe ${m.address}?`, `${path}/members/${encodeURIComponent(m.address)}`, `Unsubscribed ${m.address}.`, refresh),
    ])),
    form("Subscribe", [{ name: "addresses", label: "Addresses", placeholder: "ann@example.org, bob@example.org" }],
      "Subscribe", async (v) => {
        const r = await api("POST", `${path}/members`, { addresses: v.addresses.split(/[\s,;]+/).filter(Boolean) });
        say(`${r.subscribed} subscribed.`);
        refresh();
      }),
    h("h2", {}, "Held posts"),
    table("Held posts", ["Held", "From", "Why", ""], held.map((p) => [
      when(p.held_at), p.from || "<>", p.why,
      h("span", { class: "actions" },
        p.approved ? "approved" : button("Approve", async () => {
          await api("POST", `${path}/held/${encodeURIComponent(p.id)}/approve`);
          say("Approved: on its way to the members.");
          refresh();
        }),
        remove("Discard", "Discard this post?", `${path}/held/${encodeURIComponent(p.id)}`, "Discarded.", refresh)),
    ])),
    h("p", {}, h("a", { href: "#/lists" }, "Back to lists")));
}

async function aliases() {
  const list = await all("/api/v1/aliases");
  const refresh = () => aliases();
  page("Aliases",
    table("Aliases", ["Alias", "Delivers to", ""], list.map((a) => [
      a.alias,
      a.targets.join(", "),
      remove("Delete", `Delete the alias ${a.alias}?`, `/api/v1/aliases/${encodeURIComponent(a.alias)}`, `Deleted ${a.alias}.`, refresh),
    ])),
    h("h2", {}, "Add an alias"),
    form("Add an alias", [
      { name: "alias", label: "Alias", type: "email", placeholder: "sales@example.org" },
      { name: "targets", label: "Delivers to", placeholder: "ann@example.org, bob@example.org" },
    ], "Add alias", async (v) => {
      const targets = v.targets.split(/[\s,;]+/).filter(Boolean);
      const a = await api("POST", "/api/v1/aliases", { alias: v.alias, targets });
      say(`Added ${a.alias}.`);
      refresh();
    }));
}

async function queue() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const query = new URLSearchParams();
  for (const k of ["domain", "sender", "recipient"]) if (params.get(k)) query.set(k, params.get(k));
  const list = await all(`/api/v1/queue${query.size ? `?${query}` : ""}`);
  const refresh = () => queue();
  const act = (m, what, done) => button(what[0].toUpperCase() + what.slice(1), async () => {
    await api("POST", `/api/v1/queue/${encodeURIComponent(m.id)}/${what}`);
    say(done);
    refresh();
  });
  page("Outbound queue",
    h("p", {}, "Messages waiting for another attempt at a remote server."),
    form("Filter the queue", [
      { name: "domain", label: "To domain", required: false },
      { name: "sender", label: "From", required: false, placeholder: "<> for our own reports" },
      { name: "recipient", label: "To", required: false },
    ], "Filter", async (v) => {
      const q = new URLSearchParams();
      for (const [k, val] of Object.entries(v)) if (val) q.set(k, val);
      location.hash = q.size ? `#/queue?${q}` : "#/queue";
    }),
    table("Waiting messages", ["From", "To", "Attempts", "Next attempt", "Last answer", ""], list.map((m) => [
      m.sender || "<>",
      m.recipients.join(", "),
      String(m.attempts),
      when(m.next_attempt),
      m.last_error,
      h("span", { class: "actions" },
        act(m, "retry", `Trying ${m.id} again now.`),
        act(m, "bounce", `Bounced ${m.id}; its sender is told.`),
        remove("Delete", "Delete this message from the queue, without telling its sender?",
          `/api/v1/queue/${encodeURIComponent(m.id)}`, `Deleted ${m.id}.`, refresh)),
    ])));
}

async function quarantine() {
  const list = await all("/api/v1/quarantine");
  const refresh = () => quarantine();
  page("Quarantine",
    table("Held messages", ["Held", "From", "For", "Why", "Size", ""], list.map((m) => [
      when(m.held_at),
      m.from,
      m.recipients.join(", "),
      m.reasons,
      bytes(m.size),
      h("span", { class: "actions" },
        h("a", { href: `/api/v1/quarantine/${encodeURIComponent(m.id)}/message`, download: `${m.id}.eml` }, "Download"),
        m.released_at ? "released" : button("Release", async () => {
          await api("POST", `/api/v1/quarantine/${encodeURIComponent(m.id)}/release`);
          say(`Released ${m.id} to its recipients.`);
          refresh();
        }),
        remove("Delete", "Delete this message for good?", `/api/v1/quarantine/${encodeURIComponent(m.id)}`, `Deleted ${m.id}.`, refresh)),
    ])));
}

async function keys() {
  const list = await all("/api/v1/apikeys");
  const refresh = () => keys();
  page("API keys",
    table("API keys", ["Id", "Role", "Domains", "Made", "By", "State"], list.map((k) => [
      h("code", {}, k.id),
      k.role === "admin" ? "admin" : "domain admin",
      k.domains.join(", ") || "all",
      when(k.created),
      k.created_by || "command line",
      k.revoked ? `revoked ${when(k.revoked)}` : remove("Revoke", `Revoke the key ${k.id}? Scripts using it stop working at once.`, `/api/v1/apikeys/${encodeURIComponent(k.id)}`, `Revoked ${k.id}.`, refresh),
    ])),
    h("h2", {}, "Make a key"),
    form("Make a key", [
      { name: "role", label: "Role", options: [["domain_admin", "domain admin"], ["admin", "admin"]] },
      { name: "domains", label: "Domains", placeholder: "example.org (domain admin)", required: false },
    ], "Make key", async (v) => {
      const domains = v.domains.split(/[\s,;]+/).filter(Boolean);
      const made = await api("POST", "/api/v1/apikeys", { role: v.role, domains });
      await keys();
      document.getElementById("main").append(once(`Key ${made.id}`, made.key));
    }));
}

async function audit() {
  const list = await api("GET", "/api/v1/audit?limit=200");
  page("Audit log",
    table("Changes, newest first", ["When", "Who", "From", "What", "On"], list.items.map((e) => [
      when(e.at), e.who, e.from || "", e.action, e.target,
    ])));
}

async function account() {
  const me = await api("GET", "/api/v1/me");
  const apps = await api("GET", "/api/v1/me/app-passwords");
  const refresh = () => account();
  page("Your account",
    h("p", {}, `${me.address}: ${bytes(me.used)} used of ${bytes(me.quota)}.`),
    h("h2", {}, "App passwords"),
    h("p", {}, "One for each mail program or device (IMAP, POP3, SMTP, ManageSieve). They do not sign in here."),
    table("App passwords", ["Name", "Starts with", "Made", ""], apps.items.map((p) => [
      p.name, h("code", {}, p.id), when(p.created),
      remove("Delete", `Delete the app password ${p.name}? Programs using it are signed out.`, `/api/v1/me/app-passwords/${encodeURIComponent(p.name)}`, `Deleted ${p.name}.`, refresh),
    ])),
    form("Make an app password", [
      { name: "name", label: "Name", placeholder: "Phone" },
      { name: "current", label: "Your password", type: "password", autocomplete: "current-password" },
    ], "Make app password", async (v) => {
      const made = await api("POST", "/api/v1/me/app-passwords", { name: v.name, current_password: v.current });
      await account();
      document.getElementById("main").append(once(`App password ${made.name}`, made.password));
    }),
    h("h2", {}, "Password"),
    form("Change your password", [
      { name: "current", label: "Current password", type: "password", autocomplete: "current-password" },
      { name: "next", label: "New password", type: "password", autocomplete: "new-password" },
    ], "Change password", async (v) => {
      session = await api("PUT", "/api/v1/me/password", { current_password: v.current, new_password: v.next });
      say("Password changed; your other sessions have ended.");
    }));
}

const views = {
  domains: { title: "Domains", run: domains, admin: true },
  users: { title: "Users", run: users, admin: true },
  aliases: { title: "Aliases", run: aliases, admin: true },
  lists: { title: "Lists", run: lists, admin: true },
  queue: { title: "Queue", run: queue, admin: true },
  quarantine: { title: "Quarantine", run: quarantine, admin: true },
  keys: { title: "API keys", run: keys, admin: true },
  audit: { title: "Audit log", run: audit, admin: true },
  account: { title: "Your account", run: account, admin: false },
  dns: { run: dns, admin: true, hidden: true },
  user: { run: user, admin: true, hidden: true },
  list: { run: listView, admin: true, hidden: true },
};

function navigation(current) {
  const nav = document.getElementById("nav");
  nav.hidden = false;
  nav.replaceChildren(h("ul", {},
    Object.entries(views)
      .filter(([, v]) => !v.hidden && (!v.admin || session.admin))
      .map(([k, v]) => h("li", {}, h("a", { href: `#/${k}`, "aria-current": k === current ? "page" : false }, v.title)))),
  );
  document.getElementById("who").replaceChildren(
    h("span", {}, session.address),
    button("Sign out", async () => {
      await api("DELETE", "/api/v1/session");
      session = null;
      location.hash = "";
      say("Signed out.");
      route();
    }));
}

/// The page an invitation link opens: its owner chooses a password.
async function invitation(token) {
  document.getElementById("nav").hidden = true;
  let info;
  try {
    info = await api("GET", `/api/v1/invitations/${encodeURIComponent(token)}`);
  } catch (err) {
    page("Invitation", h("p", { class: "bad" }, err.message),
      h("p", {}, "Ask whoever invited you for a new link."));
    return;
  }
  page("Choose your password",
    h("p", {}, `For ${info.address}. The link works until ${when(info.expires)}, once.`),
    form("Choose your password", [
      { name: "password", label: "Password", type: "password", autocomplete: "new-password" },
      { name: "again", label: "Again", type: "password", autocomplete: "new-password" },
    ], "Set password", async (v) => {
      if (v.password !== v.again) throw new Error("The two passwords differ.");
      await api("POST", `/api/v1/invitations/${encodeURIComponent(token)}`, { password: v.password });
      // Off the link without a hashchange, which would clear the message.
      history.replaceState(null, "", location.pathname);
      say(`Your password is set: sign in as ${info.address}.`);
      signIn();
    }));
  document.querySelector("#main input")?.focus();
}

async function route() {
  const invite = location.hash.match(/^#\/invite\/([0-9a-fA-F]+)$/);
  if (invite) {
    await invitation(invite[1]);
    return;
  }
  if (!session) {
    try {
      session = await api("GET", "/api/v1/session");
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) say(err.message, "error");
      signIn();
      return;
    }
  }
  const [name, ...rest] = location.hash.replace(/^#\//, "").split("?")[0].split("/");
  const fallback = session.admin ? "domains" : "account";
  const view = views[name] && (!views[name].admin || session.admin) ? name : fallback;
  navigation(view);
  try {
    await views[view].run(...rest.map(decodeURIComponent));
    document.getElementById("main").focus({ preventScroll: true });
  } catch (err) {
    say(err.message, "error");
  }
}

window.addEventListener("hashchange", () => {
  say("");
  route();
});
// Keyboard: g then a letter goes to a section (d, u, a, i, o, q, k, l, m).
let pendingG = false;
window.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea")) return;
  if (e.key === "g") {
    pendingG = true;
    return;
  }
  if (pendingG) {
    const to = { d: "domains", u: "users", a: "aliases", i: "lists", o: "queue", q: "quarantine", k: "keys", l: "audit", m: "account" }[e.key];
    if (to) location.hash = `#/${to}`;
  }
  pendingG = false;
});
route();
