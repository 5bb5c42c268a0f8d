// What the registry page and the tarball of the package under test (vitest's root) show: a README with more
// than a title whose links work outside the repository (absolute, into the repository's URL) and whose code
// examples run as written; the MIT LICENSE; repository/homepage/bugs pointing at the one repository URL in
// the root package.json. Every package's vitest config includes this file.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

interface Manifest {
  name: string;
  private?: boolean;
  license?: string;
  files?: string[];
  repository?: { type: string; url: string; directory?: string };
  homepage?: string;
  bugs?: { url: string };
}

const root = process.cwd();
const repoRoot = join(root, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Manifest;
const rootPkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as Manifest;
const readme = existsSync(join(root, 'README.md')) ? readFileSync(join(root, 'README.md'), 'utf8') : '';

/** Packages owned by a branch in flight (their docs and metadata land with it). */
const IN_FLIGHT = new Set<string>([]);
const checked = !pkg.private && !IN_FLIGHT.has(pkg.name);

/** https://github.com/OWNER/NAME, from the root package.json's repository. */
const repoUrl = (rootPkg.repository?.url ?? '').replace(/^git\+/, '').replace(/\.git$/, '');
const dir = `packages/${root.split(/[\\/]/).pop() as string}`;

/** Code blocks: the info string (ts, js, bash, …), the code, and an HTML comment right above it, if any. */
function codeBlocks(markdown: string): { lang: string; code: string; note: string | null }[] {
  const out: { lang: string; code: string; note: string | null }[] = [];
  for (const m of markdown.matchAll(/(?:<!--\s*(.*?)\s*-->\s*\n)?```(\w*)\n([\s\S]*?)```/g)) {
    out.push({ lang: m[2] ?? '', code: m[3] ?? '', note: m[1] ?? null });
  }
  return out;
}

/** Files an example reads, made the way a user would have them (a checkpoint folder in the documented layout, an image). */
const SETUP: Record<string, (cwd: string) => void> = {
  '@vl/blip': (cwd) => {
    // The tiny captioning fixture in the Hugging Face layout, with a vocabulary matching its config's ids.
    const folder = join(cwd, 'blip-image-captioning-base');
    cpSync(join(repoRoot, 'fixtures/blip-hf/blip-captioning-seed0'), folder, { recursive: true });
    const vocab = ['[PAD]', '[UNK]', '[unused0]', '[SEP]', '[CLS]', '[MASK]'];
    for (let i = 0; vocab.length < 97; i++) vocab.push(`w${i}`);
    writeFileSync(join(folder, 'vocab.txt'), `${[...vocab, '[DEC]', '[ENC]'].join('\n')}\n`);
    cpSync(join(repoRoot, 'packages/core/src/data/__tests__/fixtures/images/ok2.jpg'), join(cwd, 'cat.jpg'));
  },
};

const scratch = mkdtempSync(join(tmpdir(), 'vl-readme-'));
// Snippets live under the repository's node_modules, so `@vl/*` resolves to the workspace packages as it
// would to installed ones (through their exports maps), while they run in a fresh folder.
const snippetDir = join(repoRoot, 'node_modules', '.cache', 'vl-readme', pkg.name.replace('/', '+'));
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  rmSync(snippetDir, { recursive: true, force: true });
});

describe(`${pkg.name} published docs and metadata`, () => {
  it.runIf(checked)('has a README with more than a title, and the MIT LICENSE in the tarball', () => {
    expect(readme.replace(/^# .*$/m, '').trim().length, 'README.md is only a title').toBeGreaterThan(200);
    expect(pkg.license).toBe('MIT');
    expect(pkg.files).toEqual(expect.arrayContaining(['README.md', 'LICENSE']));
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toBe(readFileSync(join(repoRoot, 'LICENSE'), 'utf8'));
  });

  it.runIf(checked)('repository, homepage and bugs name the repository of the root package.json', () => {
    expect(repoUrl).toMatch(/^https:\/\/github\.com\/[^/]+\/[^/]+$/);
    expect({ repository: pkg.repository, homepage: pkg.homepage, bugs: pkg.bugs }).toEqual({
      repository: { type: 'git', url: `git+${repoUrl}.git`, directory: dir },
      homepage: `${repoUrl}/tree/main/${dir}#readme`,
      bugs: { url: `${repoUrl}/issues` },
    });
  });

  it.runIf(checked)('README links are absolute (they work on the registry page); links into the repository use its URL', () => {
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string);
    expect(targets.filter((t) => !/^https?:\/\//.test(t) && !t.startsWith('#'))).toEqual([]);
    const github = targets.filter((t) => t.startsWith('https://github.com/') && !t.startsWith('https://github.com/tensorflow'));
    expect(github.filter((t) => !t.startsWith(`${repoUrl}/`))).toEqual([]);
  });

  it.runIf(checked)('examples load checkpoints from local folders, not hub-like ids', () => {
    const ids = [...readme.matchAll(/fromPretrained\(\s*['"`]([^'"`]+)['"`]/g)].map((m) => m[1] as string);
    expect(ids.filter((id) => !id.startsWith('./') && !id.startsWith('../') && !id.startsWith('/'))).toEqual([]);
  });

  const snippets = codeBlocks(readme).filter((b) => ['ts', 'js', 'typescript', 'javascript'].includes(b.lang));
  snippets.forEach((block, i) => {
    const skip = block.note?.match(/^readme-test: skip \((.+)\)$/)?.[1];
    it.skipIf(!checked || skip !== undefined)(`README example ${i + 1} runs as written${skip ? ` (skipped: ${skip})` : ''}`, () => {
      const cwd = join(scratch, `example-${i + 1}`);
      mkdirSync(cwd, { recursive: true });
      mkdirSync(snippetDir, { recursive: true });
      SETUP[pkg.name]?.(cwd);
      const file = join(snippetDir, `example-${i + 1}.mjs`);
      writeFileSync(file, block.code);
      const r = spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', env: { ...process.env, VL_BACKEND: 'cpu' } });
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout.trim().length, 'an example shows its result').toBeGreaterThan(0);
    });
  });
});
