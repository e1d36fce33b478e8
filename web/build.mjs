// Bundles the front end into web/assets/dist with esbuild: app.js/css on
// every page, terminal.js/css on the terminal page, desktop.js/css on the
// desktop page, player.js/css (asciinema-player) on the terminal recording
// player, replay.js/css (Guacamole.SessionRecording) on the desktop one,
// files.js/css on the file browser, mfa.js/css on the MFA pages (passkey
// ceremonies), and favicon.svg. Fixed names, so the
// templates can link them; the server revalidates them on every load.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = dirname(fileURLToPath(import.meta.url));
const out = join(web, 'assets', 'dist');
mkdirSync(out, { recursive: true });

try {
  await build({
    entryPoints: {
      app: join(web, 'src', 'app.ts'),
      terminal: join(web, 'src', 'terminal.ts'),
      desktop: join(web, 'src', 'desktop.ts'),
      player: join(web, 'src', 'player.ts'),
      replay: join(web, 'src', 'replay.ts'),
      files: join(web, 'src', 'files.ts'),
      mfa: join(web, 'src', 'mfa.ts'),
    },
    bundle: true,
    minify: true,
    sourcemap: true,
    target: 'es2020',
    format: 'iife',
    outdir: out,
    logLevel: 'warning',
    loader: { '.woff2': 'file', '.woff': 'file' },
  });
} catch {
  // esbuild has printed the errors.
  process.exit(1);
}
// The site icon, linked from every page and served at /favicon.ico.
copyFileSync(join(web, 'src', 'favicon.svg'), join(out, 'favicon.svg'));
