// Headless sign-in driver: Debian's Chromium (never a downloaded browser) driven by playwright-core.
// It opens an authorization URL, fills the token service's sign-in form, approves the consent page
// when one is shown, and stops when the browser lands on the client's loopback callback, which a
// real HTTP server on 127.0.0.1 answers (see CallbackServer).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.MCPGATE_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The OAuth client's redirect target: http://127.0.0.1:<port>/callback, recording every hit. */
export class CallbackServer {
  static async start() {
    const s = new CallbackServer();
    s.hits = [];
    s.server = http.createServer((req, res) => {
      const url = new URL(req.url, `http://${req.headers.host}`);
      s.hits.push(url);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'close' });
      res.end('<!doctype html><title>done</title><p>Authorization finished; the test takes it from here.</p>');
    });
    await new Promise((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(0, '127.0.0.1', resolve);
    });
    s.url = `http://127.0.0.1:${s.server.address().port}/callback`;
    return s;
  }

  async close() {
    this.server.closeAllConnections?.();
    await new Promise((r) => this.server.close(r));
  }
}

export class Browser {
  static async launch(dir) {
    const b = new Browser();
    b.userDataDir = path.join(dir, `chromium-profile-${crypto.randomBytes(4).toString('hex')}`);
    fs.mkdirSync(b.userDataDir, { recursive: true });
    b.context = await chromium.launchPersistentContext(b.userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    b.context.setDefaultTimeout(15_000);
    return b;
  }

  async close() {
    await this.context?.close().catch(() => {});
    fs.rmSync(this.userDataDir, { recursive: true, force: true });
  }

  /** Cookies the browser holds for a URL, as a Cookie header value. */
  async cookieHeader(url) {
    const cookies = await this.context.cookies(url);
    return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  /**
   * Follows an authorization URL to the client's callback. Returns
   *   {callback: URL|null, steps: [{kind, url, status}], status, bodyText}
   * where kind is 'sign_in', 'consent', 'callback' or 'other' (an error page, or anything else),
   * and status/bodyText describe the last page when no callback was reached.
   */
  async authorize(authorizationUrl, { username, password, callbackUrl, approve = true, maxSteps = 6 }) {
    const page = await this.context.newPage();
    try {
      const r = await this.drive(page, { url: authorizationUrl, username, password, approve, maxSteps, until: (u) => u.startsWith(callbackUrl) });
      return { callback: r.arrived ? new URL(r.url) : null, steps: r.steps, status: r.status, bodyText: r.bodyText };
    } finally {
      await page.close().catch(() => {});
    }
  }

  /**
   * Drives `page` through sign-in and consent pages (the gateway's and a provider's) until `until(url)`
   * holds. Starts with `page.goto(url)` when `url` is given, otherwise with `start()` (a click that
   * navigates, for example). Returns {arrived, url, steps, status, bodyText}; the page stays open.
   */
  async drive(page, { url, start, username, password, approve = true, maxSteps = 8, until }) {
    const steps = [];
    let response;
    try {
      if (url !== undefined) response = await page.goto(String(url), { waitUntil: 'load' });
      else response = await submitWith(page, null, start);
    } catch (e) {
      steps.push({ kind: 'navigation_error', url: page.url(), error: e.message.split('\n')[0] });
      return { arrived: false, url: page.url(), steps, status: null, bodyText: '' };
    }
    for (let i = 0; i < maxSteps; i++) {
      const current = page.url();
      const status = response?.status() ?? null;
      if (until(current)) {
        steps.push({ kind: 'callback', url: current, status });
        return { arrived: true, url: current, steps, status };
      }
      const kind = await classify(page);
      steps.push({ kind, url: current, status });
      if (kind === 'sign_in') {
        await page.fill('input[name="username"]', username);
        await page.fill('input[name="password"]', password);
        response = await submitWith(page, await page.$('input[name="password"]'), () =>
          page.press('input[name="password"]', 'Enter'));
      } else if (kind === 'consent') {
        const button = await consentButton(page, approve ? 'approve' : 'deny');
        response = await submitWith(page, button, () => button.click());
      } else {
        return { arrived: false, url: current, steps, status, bodyText: await page.innerText('body').catch(() => '') };
      }
    }
    return { arrived: false, url: page.url(), steps, status: response?.status() ?? null, bodyText: await page.innerText('body').catch(() => '') };
  }
}

/** Runs `action` (a click or key press) and waits for the navigation it starts. */
async function submitWith(page, _element, action) {
  const [response] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load', timeout: 15_000 }).catch((e) => {
      // A navigation to a port nobody listens on, for example: the caller sees the URL.
      if (/net::ERR_/.test(e.message)) return null;
      throw e;
    }),
    action(),
  ]);
  return response;
}

async function classify(page) {
  if (await page.$('input[name="password"]')) return 'sign_in';
  if (await consentButton(page, 'approve')) return 'consent';
  return 'other';
}

/** The consent form's approve (or deny) button, by its text, value or name. */
async function consentButton(page, which) {
  const buttons = await page.$$('button, input[type="submit"]');
  for (const b of buttons) {
    const text = (await b.evaluate((e) => `${e.innerText ?? ''} ${e.value ?? ''} ${e.name ?? ''}`)).toLowerCase();
    const isDeny = /deny|reject|cancel|decline|don.?t/.test(text);
    const isApprove = !isDeny && /approve|allow|authori[sz]e|accept|grant|consent/.test(text);
    if ((which === 'approve' && isApprove) || (which === 'deny' && isDeny)) return b;
  }
  return null;
}
