// The webmail in Debian's chromium: bob writes to alice, whose open
// webmail shows it without a reload; alice reads it, replies with an
// attachment, and bob's webmail shows the reply as it comes; alice
// searches, moves a message to Junk, walks the list by keyboard, opens a
// thousand-message mailbox, and opens every message of a hostile corpus,
// during which no script may run, no dialog open and no request leave
// for anywhere but this server. Then a phone-sized screen in dark mode.
//
//   node tests/browser/mail.mjs BASE_URL SHOTS_DIR
//
// Users (made by the caller): alice@example.com "alice passphrase 1",
// bob@example.com "bob passphrase 1". Alice's INBOX holds the hostile
// corpus (subjects starting "Hostile"); her "Big" mailbox a thousand
// messages. Prints one line per step.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";

const [base, shots] = process.argv.slice(2);
const origin = new URL(base).origin;
const problems = [];
const expected = (text) => text.startsWith("Failed to load resource: the server responded with a status of 401");
const step = (text) => console.log(`ok: ${text}`);

let failing = null;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

/// A signed-in webmail page for `who`, watched: console errors of the
/// app, scripts running anywhere (a dialog), and requests leaving for
/// anywhere but this server.
async function open(who, password, viewport) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: viewport || { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(60000);
  page.on("console", (m) => {
    const main = m.location()?.url?.startsWith(`${origin}/mail`) || m.location()?.url === `${origin}/`;
    if (m.type() === "error" && main && !expected(m.text())) problems.push(`console (${who}): ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error (${who}): ${e.message}`));
  page.on("dialog", (d) => {
    problems.push(`a dialog opened (${who}): ${d.type()} ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  context.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("about:")) {
      problems.push(`a request left for ${url} (${who})`);
    }
  });
  await page.goto(`${base}/`);
  const form = page.getByRole("form", { name: "Sign in" });
  await form.getByLabel("Address").fill(who);
  await form.getByLabel("Password").fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Mailboxes" }).waitFor();
  return page;
}

const row = (page, subject) => page.locator("#list li").filter({ hasText: subject }).first();

try {
  const alice = await open("alice@example.com", "alice passphrase 1");
  failing = alice;
  step("alice signed in; her mailboxes are listed");
  const bob = await open("bob@example.com", "bob passphrase 1");
  step("bob signed in");

  // Bob writes to alice; her open webmail shows it without a reload.
  failing = bob;
  await bob.keyboard.press("c");
  const composer = bob.getByRole("form", { name: "New message" });
  await composer.getByLabel("To").fill("alice@example.com");
  await composer.getByLabel("Subject").fill("Lunch on Friday?");
  await composer.getByLabel("Message").fill("Shall we try the new place?\n\nBob");
  await composer.getByText("Draft saved.").waitFor();
  step("bob's draft saved as he typed");
  await bob.screenshot({ path: `${shots}/compose.png` });
  await composer.getByRole("button", { name: "Send" }).click();
  await bob.getByText("Sent.").waitFor();
  failing = alice;
  const arrived = Date.now();
  await row(alice, "Lunch on Friday?").waitFor();
  step(`bob's message appeared in alice's open inbox without a reload (${Date.now() - arrived} ms)`);

  // Alice reads it and replies with an attachment, by keyboard.
  await row(alice, "Lunch on Friday?").click();
  await alice.getByText("Shall we try the new place?").waitFor();
  await alice.screenshot({ path: `${shots}/reader.png` });
  step("alice read it");
  await alice.keyboard.press("r");
  const reply = alice.getByRole("form", { name: "New message" });
  if ((await reply.getByLabel("To").inputValue()) !== "bob@example.com") throw new Error("the reply is not to bob");
  if ((await reply.getByLabel("Subject").inputValue()) !== "Re: Lunch on Friday?") throw new Error("not a Re: subject");
  await reply.getByLabel("Message").press("Home");
  await reply.getByLabel("Message").type("Yes! Menu attached.");
  await reply.getByLabel("Attach files").setInputFiles({ name: "menu.txt", mimeType: "text/plain", buffer: Buffer.from("Soup\nBread\n") });
  await reply.getByText("📎 menu.txt").waitFor();
  await reply.getByRole("button", { name: "Send" }).click();
  await alice.getByText("Sent.").waitFor();
  step("alice replied with an attachment");

  failing = bob;
  await row(bob, "Re: Lunch on Friday?").waitFor();
  await row(bob, "Re: Lunch on Friday?").click();
  await bob.getByText("Yes! Menu attached.").waitFor();
  const link = bob.getByRole("link", { name: "menu.txt" });
  await link.waitFor();
  const download = await link.getAttribute("href");
  const got = await bob.evaluate(async (href) => (await fetch(href)).text(), download);
  if (got !== "Soup\nBread\n") throw new Error(`the attachment came back as ${JSON.stringify(got)}`);
  step("bob's webmail showed the reply as it came, with its attachment");

  // Search over the whole account as you type.
  failing = alice;
  await alice.keyboard.press("/");
  await alice.keyboard.type("quarterly");
  // The inbox shows it too: wait for the list to be the search's.
  await alice.waitForFunction(() => {
    const items = document.querySelectorAll("#list li");
    return items.length === 1 && items[0].textContent.includes("Quarterly numbers");
  });
  step("search found the one message as alice typed");
  await alice.getByRole("searchbox").fill("");
  await alice.locator("nav#boxes button[data-role=inbox]").click();

  // Keyboard: j and k walk the list.
  await alice.locator("#list").focus();
  await alice.keyboard.press("j");
  await alice.keyboard.press("j");
  await alice.keyboard.press("k");
  const selected = await alice.locator('#list li[aria-selected="true"]').count();
  if (selected !== 1) throw new Error("j and k left no message selected");
  step("j and k walk the list");

  // Spam: the message goes to Junk.
  await row(alice, "Quarterly numbers").click();
  await alice.getByRole("button", { name: "Spam" }).click();
  await alice.getByText("Moved to Junk.").waitFor();
  await alice.locator("nav#boxes button[data-role=junk]").click();
  await row(alice, "Quarterly numbers").waitFor();
  step("a message marked as spam is in Junk");
  await alice.locator("nav#boxes button[data-role=inbox]").click();

  // A thousand messages: how long the list takes, as the browser sees it.
  const big = alice.locator("nav#boxes button").filter({ hasText: "Big" });
  const times = [];
  for (let i = 0; i < 3; i++) {
    await alice.locator("nav#boxes button[data-role=inbox]").click();
    await alice.locator("#list li").first().waitFor();
    const t0 = Date.now();
    await big.click();
    await row(alice, "Bulk message 999").waitFor();
    times.push(Date.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(`thousand-message mailbox opened in ${times.join(", ")} ms (median ${times[1]} ms)`);
  step("the thousand-message mailbox opened");

  // The hostile corpus: open each; nothing may run or leave.
  await alice.locator("nav#boxes button[data-role=inbox]").click();
  await row(alice, "Hostile").waitFor();
  const hostile = await alice.locator("#list li").filter({ hasText: "Hostile" }).count();
  for (let i = 0; i < hostile; i++) {
    const item = alice.locator("#list li").filter({ hasText: "Hostile" }).nth(i);
    const subject = (await item.locator(".subject").textContent()).replace(" 📎", "");
    await item.click();
    // The reader shows this message (not still the last one) …
    await alice.waitForFunction((s) => document.querySelector("#reader h2")?.textContent === s, subject);
    const frames = alice.locator("#reader iframe");
    if (await frames.count()) {
      // … and its HTML, loaded in the frame.
      await alice.frameLocator("#reader iframe").first().locator("body").waitFor({ state: "attached" });
      const sandbox = await frames.first().getAttribute("sandbox");
      if (sandbox.includes("allow-scripts") || sandbox.includes("allow-same-origin")) throw new Error(`a frame may run scripts: ${sandbox}`);
    }
    if (await alice.evaluate(() => window.__pwned === true)) problems.push("a hostile script ran in the app");
  }
  // Whatever ran late would have said so by now; the list is read again
  // to give it the chance.
  await alice.locator("nav#boxes button[data-role=inbox]").click();
  await row(alice, "Hostile").waitFor();
  step(`opened ${hostile} hostile messages: no script ran, no dialog opened, no request left`);
  await alice.screenshot({ path: `${shots}/hostile.png` });

  // A phone-sized screen in dark mode.
  const phone = await open("alice@example.com", "alice passphrase 1", { width: 390, height: 844 });
  failing = phone;
  await phone.emulateMedia({ colorScheme: "dark" });
  await phone.locator("#list li").first().waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow}px wider than a phone screen`);
  const background = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (background !== "rgb(20, 22, 26)") throw new Error(`not dark: ${background}`);
  await phone.locator("#list li").first().click();
  await phone.getByRole("button", { name: "← Back" }).waitFor();
  await phone.screenshot({ path: `${shots}/phone-dark.png` });
  step("a phone screen in dark mode: one column, no overflow");

  if (problems.length) throw new Error(problems.join("\n"));
  step("no script ran, no dialog, no request elsewhere, no console errors");
} catch (e) {
  if (failing) {
    const shown = await failing.locator("body").innerText({ timeout: 5000 }).catch((why) => `(unreadable: ${why})`);
    console.log(`the page showed:\n${shown}`);
    await failing.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  }
  if (problems.length) console.log(problems.join("\n"));
  throw e;
} finally {
  writeFileSync(`${shots}/done`, "");
  await browser.close();
}
