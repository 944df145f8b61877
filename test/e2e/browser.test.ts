// The seeds' experiment in a real browser: headless Chromium (Debian's `chromium`, driven by playwright-core) loads
// the demo through the balancer and reloads it: the serving instance alternates a, b, a, b while the session id and
// creation time stay and the counter goes up. Takes a screenshot (docs/demo.png, the README's, with UPDATE_SCREENSHOT=1).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { colorFor } from '../../demo-app/config';
import { type RunningDemo, startDemo } from '../helpers/demo';

jest.setTimeout(600_000); // room for installing Chromium on a fresh machine

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// The README's screenshot is refreshed only on request (UPDATE_SCREENSHOT=1), so a test run leaves the tree clean.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT
  ? path.resolve(__dirname, '..', '..', 'docs', 'demo.png')
  : path.join(require('os').tmpdir(), `express-msm-demo-${process.pid}.png`);
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

interface Seen {
  instance: string;
  sessionId: string;
  createdAt: string;
  views: number;
}

async function read(page: Page): Promise<Seen> {
  const text = async (id: string) => ((await page.locator(`#${id}`).textContent()) ?? '').trim();
  return {
    instance: await text('instance'),
    sessionId: await text('session-id'),
    createdAt: await text('created-at'),
    views: Number(await text('views')),
  };
}

describe('demo in headless Chromium', () => {
  let demo: RunningDemo | undefined;
  let context: BrowserContext | undefined;
  let profile: string | undefined;

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await demo?.stop();
  });

  test('reloads through the balancer: the instance alternates a, b, a, b, the session id stays, the counter goes up', async () => {
    if (!fs.existsSync(CHROMIUM) && !process.env.CHROMIUM_PATH && process.getuid?.() === 0) {
      // A fresh Debian machine: install it, as `npm run demo` does for memcached (root only).
      require('child_process').execSync(
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium',
        { stdio: 'ignore', timeout: 600_000 },
      );
    }
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is missing at ${CHROMIUM}: \`.ci/run\` installs it (apt-get install -y chromium on Debian), `
          + 'or set CHROMIUM_PATH to a Chromium binary.',
      );
    }
    demo = await startDemo({ DEMO_STICKY: '', DEMO_BALANCER: '' });
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'express-msm-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1000, height: 640 },
      timeout: 120_000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(60_000);

    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(demo.state.url, { waitUntil: 'load' });
    const seen: Seen[] = [await read(page)];
    for (let i = 0; i < 7; i++) {
      await page.reload({ waitUntil: 'load' });
      seen.push(await read(page));
    }
    const first = seen[0];
    expect(first.sessionId).toMatch(/^[0-9A-F]{32}-n[12]$/);
    expect(first.views).toBe(1);
    for (const [i, s] of seen.entries()) {
      expect(s.sessionId).toBe(first.sessionId);
      expect(s.createdAt).toBe(first.createdAt);
      expect(s.views).toBe(i + 1);
    }
    const instances = seen.map((s) => s.instance);
    expect(new Set(instances)).toEqual(new Set(['a', 'b']));
    // Every reload goes to the other instance: a, b, a, b (the logo's request does not take a page's turn).
    expect(instances).toEqual(instances.map((_, i) => (i % 2 ? instances[1] : instances[0])));
    expect(instances[1]).not.toBe(instances[0]);
    // The page's logo came through the balancer too.
    expect(requested.some((u) => u.endsWith('/static/logo.png'))).toBe(true);

    // "Served by" badges carry their instance's colour.
    const badges = await page
      .locator('#history .h')
      .evaluateAll((els: any[]) =>
        els.map((e) => [e.textContent, (globalThis as any).getComputedStyle(e).backgroundColor]),
      );
    expect(badges.length).toBeGreaterThanOrEqual(2);
    const rgb = (hex: string) => `rgb(${[1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;
    for (const [name, bg] of badges) expect(bg).toBe(rgb(colorFor(name)));

    // The cart button (a locked route in non-sticky mode) posts, redirects to the page and keeps the session.
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.waitForURL(demo.state.url);
    await expect(page.locator('#cart').textContent()).resolves.toContain('apple');
    const after = await read(page);
    expect(after.sessionId).toBe(first.sessionId);
    expect(after.views).toBe(seen.length + 1);

    // The logo loaded (served without a session: requestUriIgnorePattern).
    const logoOk = await page.locator('header img').evaluate((img: any) => img.complete && img.naturalWidth > 0);
    expect(logoOk).toBe(true);

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(5000);

    // /metrics in the browser is a table, not a line of JSON.
    await page.goto(new URL('/metrics', demo.state.url).toString(), { waitUntil: 'load' });
    await expect(page.locator('caption').first().textContent()).resolves.toBe('Counters');
    await expect(page.locator('tr', { hasText: 'requestsWithSession' }).locator('td').textContent()).resolves.toMatch(
      /^\d+$/,
    );
  });
});
