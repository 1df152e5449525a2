// Drives real headless Chromium through the connect page, one scenario per run.
//
//   node connect_flow.mjs '<scenario JSON>'
//
// Scenario: {"baseUrl", "token", "screenshotDir", "chromium"?: "/usr/bin/chromium", "steps": [...]}
// Steps (in order, one browser for all of them):
//   {"do": "open_with_token"}                      the platform's link: /connect?token=...
//   {"do": "connect_organization", "mailboxes": [...], "expectText": "..."}
//   {"do": "connect_personal", "shared": [...], "expectText": "..."}
//   {"do": "status"}                               /connect: every integration as the page shows it
//   {"do": "reconnect", "integrationId": "...", "expectText": "..."}
//
// Prints one JSON object on stdout: {"ok": true, "results": [...]} or
// {"ok": false, "step": n, "error": "...", "results": [...]}, and exits 1 when not ok.
// A screenshot of every step is written to screenshotDir (for debugging a failure).

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const scenario = JSON.parse(process.argv[2] ?? '{}');
const results = [];
const NAV_TIMEOUT = 20000;

async function shot(page, index, name) {
  if (!scenario.screenshotDir) return null;
  const path = join(scenario.screenshotDir, `${String(index).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage: true }).catch(() => {});
  return path;
}

async function bodyText(page) {
  return (await page.textContent('body')) ?? '';
}

// Submits a form by clicking `button` and waits until the browser has followed every redirect
// (ours to Microsoft, Microsoft's back to the callback) and shows the callback's page.
async function submitToCallback(page, button) {
  const responses = [];
  const listener = (response) => {
    if (response.request().isNavigationRequest()) responses.push(response.status());
  };
  page.on('response', listener);
  await Promise.all([
    page.waitForURL((url) => url.pathname.endsWith('/oauth/callback'), { timeout: NAV_TIMEOUT, waitUntil: 'load' }),
    page.click(button),
  ]);
  page.off('response', listener);
  return { url: new URL(page.url()), statuses: responses };
}

async function status(page) {
  await page.goto(`${scenario.baseUrl}/connect`, { waitUntil: 'load', timeout: NAV_TIMEOUT });
  return page.$$eval('section.integration', (sections) =>
    sections.map((s) => ({
      id: s.dataset.integrationId,
      state: s.dataset.state,
      label: s.querySelector('[data-role="state"]')?.textContent?.trim() ?? null,
      title: s.querySelector('h3')?.textContent?.trim() ?? null,
      reason: s.querySelector('[data-role="reason"]')?.textContent?.trim() ?? null,
      fix: s.querySelector('[data-role="fix"]')?.textContent?.trim() ?? null,
      hasReconnect: !!s.querySelector('[data-role="reconnect"]'),
      mailboxes: [...s.querySelectorAll('tr[data-mailbox-id]')].map((tr) => tr.textContent.replace(/\s+/g, ' ').trim()),
    })),
  );
}

function expectText(text, expected, what) {
  if (expected && !text.includes(expected)) {
    throw new Error(`${what}: expected the page to say "${expected}", it says: ${text.replace(/\s+/g, ' ').slice(0, 600)}`);
  }
}

async function run(page, context, step, index) {
  switch (step.do) {
    case 'open_with_token': {
      const response = await page.goto(`${scenario.baseUrl}/connect?token=${encodeURIComponent(scenario.token)}`, {
        waitUntil: 'load',
        timeout: NAV_TIMEOUT,
      });
      const url = new URL(page.url());
      if (url.searchParams.has('token')) throw new Error(`the token stayed in the address bar: ${url.pathname}`);
      const cookies = await context.cookies(scenario.baseUrl);
      const session = cookies.find((c) => c.name === 'outlook_connect_session');
      const text = await bodyText(page);
      expectText(text, 'Choose how to connect', 'connect page');
      return {
        status: response?.status() ?? null,
        path: url.pathname,
        session: session ? { httpOnly: session.httpOnly, sameSite: session.sameSite, path: session.path } : null,
        organizationRecommended: (await page.textContent('#comparison')).includes('Recommended'),
        comparison: await page.$$eval('#comparison tr', (rows) => rows.map((r) => r.textContent.replace(/\s+/g, ' ').trim())),
      };
    }
    case 'connect_organization': {
      await page.fill('#mailboxes', (step.mailboxes ?? []).join('\n'));
      const { url, statuses } = await submitToCallback(page, '#connect-organization-submit');
      const text = await bodyText(page);
      expectText(text, step.expectText, 'organization-wide callback');
      return { callback: url.pathname, navigationStatuses: statuses, title: await page.title() };
    }
    case 'connect_personal': {
      await page.goto(`${scenario.baseUrl}/connect`, { waitUntil: 'load', timeout: NAV_TIMEOUT });
      await page.fill('#shared_mailboxes', (step.shared ?? []).join('\n'));
      const { url, statuses } = await submitToCallback(page, '#connect-personal-submit');
      const text = await bodyText(page);
      expectText(text, step.expectText, 'personal callback');
      return { callback: url.pathname, navigationStatuses: statuses, title: await page.title() };
    }
    case 'status':
      return { integrations: await status(page) };
    case 'reconnect': {
      await page.goto(`${scenario.baseUrl}/connect`, { waitUntil: 'load', timeout: NAV_TIMEOUT });
      const button = `section[data-integration-id="${step.integrationId}"] [data-role="reconnect"]`;
      if (!(await page.$(button))) throw new Error(`no reconnect button for ${step.integrationId}`);
      const { url, statuses } = await submitToCallback(page, button);
      const text = await bodyText(page);
      expectText(text, step.expectText, 'reconnect callback');
      return { callback: url.pathname, navigationStatuses: statuses, title: await page.title() };
    }
    default:
      throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
}

async function main() {
  if (scenario.screenshotDir) mkdirSync(scenario.screenshotDir, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'outlook-e2e-chromium-'));
  let context;
  let failure = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: scenario.chromium ?? '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
      timeout: 60000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(NAV_TIMEOUT);
    const steps = scenario.steps ?? [];
    for (let i = 0; i < steps.length; i++) {
      try {
        const result = await run(page, context, steps[i], i);
        result.screenshot = await shot(page, i, steps[i].do);
        results.push({ step: steps[i].do, ...result });
      } catch (err) {
        const screenshot = await shot(page, i, `${steps[i].do}-failed`);
        failure = { step: i, error: String(err?.message ?? err), url: page.url().replace(/token=[^&]*/, 'token=…'), screenshot };
        break;
      }
    }
  } catch (err) {
    failure = { step: null, error: String(err?.message ?? err) };
  } finally {
    await context?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  const out = failure ? { ok: false, ...failure, results } : { ok: true, results };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(failure ? 1 : 0);
}

main();
