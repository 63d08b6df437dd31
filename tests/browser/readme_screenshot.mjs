// The README's picture of the step-through page: `tapegrad html` on CS231n's circuit, opened in
// Debian's chromium through playwright-core as html_page_test.mjs opens it, and shot at the
// first backward step. docs/make_images.sh runs it. Usage: node readme_screenshot.mjs
// PATH/TO/tapegrad OUTPUT.png
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [tapegrad, output] = process.argv.slice(2).map((p) => path.resolve(p));
if (!tapegrad || !output) {
  console.error('usage: node readme_screenshot.mjs PATH/TO/tapegrad OUTPUT.png');
  process.exit(2);
}
const { chromium } = await import('playwright-core');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tapegrad-readme-'));
try {
  const page_file = path.join(scratch, 'cs231n.html');
  execFileSync(tapegrad, ['html', 'q = x + y; f = q * z', 'x=-2', 'y=5', 'z=-4', '-o', page_file]);
  const context = await chromium.launchPersistentContext(path.join(scratch, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1120, height: 600 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await context.newPage();
  await page.goto(pathToFileURL(page_file).href);
  await page.waitForSelector('#counter:not(:empty)');
  // Steps 1-3 are the forward pass (the inputs, q, f); step 4 is backward's first.
  for (let i = 0; i < 4; ++i) await page.click('#next');
  await page.waitForTimeout(400);  // the labels fade in over 0.3 s
  await page.screenshot({ path: output });
  await context.close();
  console.log(`wrote ${output}`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
