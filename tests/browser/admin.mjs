// Walks a new admin through the admin pages in Debian's chromium:
// sign in, add a domain (and see its DNS check), a user and an alias,
// look at the audit log, move by keyboard, then a phone-sized screen in
// dark mode. Fails on any console error (a CSP violation is one).
//
//   node tests/browser/admin.mjs BASE_URL ADDRESS PASSWORD SHOTS_DIR
//
// Prints one line per step; the user it adds is max@shop.example with
// the password "max passphrase 1" (the caller logs in with it over IMAP).
import { chromium } from "playwright-core";

const [base, address, password, shots] = process.argv.slice(2);
const problems = [];
// Chromium logs every 401 answer (asking for the session before signing
// in, a wrong password) as an error of its own; those are expected.
const expected = (text) => text.startsWith("Failed to load resource: the server responded with a status of 401");
const step = (text) => console.log(`ok: ${text}`);

// The page on screen when a step fails: its text and a screenshot say
// what it showed (an error message, a page that never came).
let failing = null;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error" && !expected(m.text())) problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  // A bound, not a timing goal: CI runs this beside the other tests on
  // two cores, where adding a domain (an RSA key) can take seconds.
  page.setDefaultTimeout(60000);
  failing = page;

  await page.goto(`${base}/admin`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const signIn = page.getByRole("form", { name: "Sign in" });
  await signIn.getByLabel("Address").fill(address);
  await signIn.getByLabel("Password").fill("not the password");
  await signIn.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("wrong address or password").waitFor();
  step("a wrong password is refused");
  await signIn.getByLabel("Password").fill(password);
  await signIn.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Domains" }).waitFor();
  step(`signed in as ${address}`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-stratus_session");
  if (!session || !session.httpOnly || !session.secure || session.sameSite !== "Strict") {
    throw new Error(`the session cookie is not HttpOnly, Secure and SameSite=Strict: ${JSON.stringify(session)}`);
  }
  if (await page.evaluate(() => document.cookie.includes("stratus_session"))) {
    throw new Error("the page's script can read the session cookie");
  }
  step("the session cookie is HttpOnly, Secure, SameSite=Strict");

  const addDomain = page.getByRole("form", { name: "Add a domain" });
  await addDomain.getByLabel("Domain").fill("shop.example");
  const adding = Date.now();
  await addDomain.getByRole("button", { name: "Add domain" }).click();
  await page.getByRole("heading", { name: "DNS records of shop.example" }).waitFor();
  const rows = page.getByRole("table", { name: "Records" }).locator("tbody tr");
  await rows.first().waitFor();
  const states = await rows.evaluateAll((trs) => trs.map((tr) => {
    const cells = [...tr.querySelectorAll("td")].map((td) => td.textContent.trim());
    return `${cells[0]} ${cells[2]} ${cells[4]}`;
  }));
  for (const s of states) console.log(`dns: ${s}`);
  if (!states.some((s) => s.includes("✔ published")) || !states.some((s) => s.includes("✘ not published"))) {
    throw new Error(`expected green and red checks: ${states.join(" | ")}`);
  }
  step(`domain added; ${states.length} DNS records checked (${Date.now() - adding} ms)`);
  await page.getByRole("button", { name: "Rotate: make the next keys" }).click();
  await page.getByRole("button", { name: "Activate the next keys" }).waitFor();
  const keyStates = await page.getByRole("table", { name: "DKIM keys" }).locator("tbody tr td:nth-child(3)").allTextContents();
  if (keyStates.join(" ") !== "active active next next") throw new Error(`DKIM keys after a rotation: ${keyStates}`);
  step("a DKIM rotation made the next keys; the active ones still sign");
  await page.screenshot({ path: `${shots}/dns.png`, fullPage: true });

  await page.getByRole("link", { name: "Users" }).click();
  await page.getByRole("heading", { name: "Users" }).waitFor();
  const addUser = page.getByRole("form", { name: "Add a user" });
  await addUser.getByLabel("Address").fill("max@shop.example");
  await addUser.getByLabel("Password").fill("max passphrase 1");
  await addUser.getByLabel("Quota").fill("1G");
  await addUser.getByRole("button", { name: "Add user" }).click();
  await page.getByRole("cell", { name: "max@shop.example" }).waitFor();
  await page.getByRole("cell", { name: "1 GiB" }).first().waitFor();
  step("user max@shop.example added with a 1 GiB quota");

  // Eve is invited: she chooses her password with the link, in a browser
  // of her own (the link names the server's public name; here it is the
  // test's address).
  const invite = page.getByRole("form", { name: "Invite a user" });
  await invite.getByLabel("Address").fill("eve@shop.example");
  await invite.getByRole("button", { name: "Invite" }).click();
  const link = await page.locator(".once code").textContent();
  const token = (link.match(/\/admin#\/invite\/([0-9a-f]{80})$/) || [])[1];
  if (!token) throw new Error(`not an invitation link: ${link}`);
  const eveContext = await browser.newContext({ ignoreHTTPSErrors: true });
  const eve = await eveContext.newPage();
  // The used link is opened again on purpose: its 404 is expected.
  const used = (text) => text.startsWith("Failed to load resource: the server responded with a status of 404");
  eve.on("console", (m) => { if (m.type() === "error" && !expected(m.text()) && !used(m.text())) problems.push(`console (eve): ${m.text()}`); });
  failing = eve;
  await eve.goto(`${base}/admin#/invite/${token}`);
  await eve.getByRole("heading", { name: "Choose your password" }).waitFor();
  await eve.getByText("For eve@shop.example.").waitFor();
  const choose = eve.getByRole("form", { name: "Choose your password" });
  await choose.getByLabel("Password").fill("eve passphrase 1");
  await choose.getByLabel("Again").fill("eve passphrase 1");
  await choose.getByRole("button", { name: "Set password" }).click();
  await eve.getByText("Your password is set: sign in as eve@shop.example.").waitFor();
  await eve.getByRole("heading", { name: "Sign in" }).waitFor();
  await eve.goto(`${base}/admin#/invite/${token}`);
  await eve.getByText("no such invitation, or it has expired or been used").waitFor();
  await eveContext.close();
  failing = page;
  step("eve@shop.example invited; she chose her password with the link, which then stopped working");

  await page.getByRole("link", { name: "Aliases" }).click();
  const addAlias = page.getByRole("form", { name: "Add an alias" });
  await addAlias.getByLabel("Alias").fill("sales@shop.example");
  await addAlias.getByLabel("Delivers to").fill("max@shop.example");
  await addAlias.getByRole("button", { name: "Add alias" }).click();
  await page.getByRole("cell", { name: "sales@shop.example" }).waitFor();
  step("alias sales@shop.example -> max@shop.example added");

  // By keyboard: g then i opens the lists.
  await page.locator("body").press("g");
  await page.locator("body").press("i");
  await page.getByRole("heading", { name: "Lists" }).waitFor();
  const addList = page.getByRole("form", { name: "Add a list" });
  await addList.getByLabel("List").fill("team@shop.example");
  await addList.getByLabel("Owners").fill("max@shop.example");
  await addList.getByRole("button", { name: "Add list" }).click();
  await page.getByRole("link", { name: "team@shop.example" }).click();
  await page.getByRole("heading", { name: "team@shop.example" }).waitFor();
  const subscribe = page.getByRole("form", { name: "Subscribe" });
  await subscribe.getByLabel("Addresses").fill("max@shop.example, friend@elsewhere.example");
  await subscribe.getByRole("button", { name: "Subscribe" }).click();
  await page.getByText("2 subscribed.").waitFor();
  await page.getByRole("cell", { name: "friend@elsewhere.example" }).waitFor();
  step("list team@shop.example made by keyboard (g i) with two members");

  // A user's page: mailboxes (read only) and an identity.
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByRole("link", { name: "max@shop.example" }).click();
  await page.getByRole("heading", { name: "max@shop.example" }).waitFor();
  await page.getByRole("cell", { name: "INBOX", exact: true }).waitFor();
  const grant = page.getByRole("form", { name: "Let them send as" });
  await grant.getByLabel("Address").fill("info@shop.example");
  await grant.getByRole("button", { name: "Grant" }).click();
  await page.getByRole("cell", { name: "info@shop.example" }).waitFor();
  step("max's mailboxes shown; max may send as info@shop.example");

  // By keyboard: g then o opens the outbound queue (empty here).
  await page.locator("body").press("g");
  await page.locator("body").press("o");
  await page.getByRole("heading", { name: "Outbound queue" }).waitFor();
  await page.getByText("No waiting messages yet.").waitFor();
  step("the outbound queue page opens by keyboard (g o), empty");

  // By keyboard: g then l opens the audit log.
  await page.locator("body").press("g");
  await page.locator("body").press("l");
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  const actions = await page.locator("tbody tr td:nth-child(4)").allTextContents();
  for (const a of ["domain.add", "domain.dkim.rotate", "user.add", "alias.add", "list.add", "list.subscribe", "user.identity.add"]) {
    if (!actions.includes(a)) throw new Error(`the audit log lacks ${a}: ${actions}`);
  }
  const who = await page.locator("tbody tr td:nth-child(2)").first().textContent();
  if (who !== `user:${address}`) throw new Error(`the audit log names ${who}`);
  step("the audit log names the admin for each change; g l reached it by keyboard");
  await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });

  // A domain admin key for the new domain, shown once.
  await page.getByRole("link", { name: "API keys" }).click();
  const addKey = page.getByRole("form", { name: "Make a key" });
  await addKey.getByLabel("Domains").fill("shop.example");
  await addKey.getByRole("button", { name: "Make key" }).click();
  const key = await page.locator(".once code").textContent();
  if (!/^stratus_[0-9a-f]+_[0-9a-f]+$/.test(key)) throw new Error(`not a key: ${key}`);
  await page.getByRole("cell", { name: "shop.example" }).waitFor();
  step("a domain admin key made and shown once");

  // The admin's own app password, for a phone.
  await page.getByRole("link", { name: "Your account" }).click();
  const addApp = page.getByRole("form", { name: "Make an app password" });
  await addApp.getByLabel("Name").fill("Phone");
  await addApp.getByLabel("Your password").fill(password);
  await addApp.getByRole("button", { name: "Make app password" }).click();
  const app = await page.locator(".once code").textContent();
  if (!/^([a-z2-7]{4}-){4}[a-z2-7]{4}$/.test(app)) throw new Error(`not an app password: ${app}`);
  await page.getByRole("cell", { name: "Phone" }).waitFor();
  console.log(`app password: ${app}`);
  step("an app password made on the account page");

  // A phone-sized screen in dark mode: nothing wider than the screen.
  const phone = await browser.newContext({
    ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 }, colorScheme: "dark", isMobile: true,
  });
  await phone.addCookies([session]);
  const small = await phone.newPage();
  small.on("console", (m) => { if (m.type() === "error" && !expected(m.text())) problems.push(`console (phone): ${m.text()}`); });
  await small.goto(`${base}/admin#/users`);
  await small.getByRole("cell", { name: "max@shop.example" }).waitFor();
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow}px wider than a phone screen`);
  const background = await small.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (background !== "rgb(20, 22, 26)") throw new Error(`not dark: ${background}`);
  step("a phone screen in dark mode: no overflow, dark colours");
  await small.screenshot({ path: `${shots}/phone-dark.png`, fullPage: true });

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  step("signed out");
  if (problems.length) throw new Error(problems.join("\n"));
  step("no console errors, no policy violations");
} catch (e) {
  if (failing) {
    const shown = await failing.locator("body").innerText({ timeout: 5000 }).catch((why) => `(unreadable: ${why})`);
    console.log(`the page showed:\n${shown}`);
    await failing.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
