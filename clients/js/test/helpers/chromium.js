// Headless Chromium for the browser tests (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is downloaded). Shared by clients/js and clients/wksdk:
// each passes its own playwright-core `chromium`, pinned in its own lockfile.

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Launches Chromium; a failure is fatal unless LIMAOIM_ALLOW_NO_BROWSER=1 (then the
 * test `t` is skipped, with the reason, and null returned).
 */
export async function launchChromium(chromium, t) {
  try {
    // launch() gives the browser a fresh temporary user data dir of its own.
    return await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  } catch (err) {
    const why = `Chromium could not start (${CHROMIUM}): ${err.message.split('\n')[0]}`;
    if (process.env.LIMAOIM_ALLOW_NO_BROWSER === '1') {
      t.skip(`${why} — skipped because LIMAOIM_ALLOW_NO_BROWSER=1`);
      return null;
    }
    throw new Error(`${why}. Install Debian's chromium (apt-get install chromium), set CHROMIUM, or set LIMAOIM_ALLOW_NO_BROWSER=1 to skip.`);
  }
}
