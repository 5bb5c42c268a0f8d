// The root entry `@vl/core` is browser-safe: esbuild bundles src/index.ts for the browser (tfjs left
// external), and no source file reachable from it imports node:*, a Node builtin, sharp or the
// Node-only half (src/node/), or touches Node globals. `@vl/core/node` is the place for those.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT_ENTRY = join(SRC, 'index.ts');
const NODE_ONLY = join(SRC, 'node');
const FORBIDDEN_PACKAGES = new Set(['sharp', 'csv-parse', 'tar-stream', '@vl/accel', 'commander', 'cli-progress']);

function forbiddenSpecifier(spec: string): string | null {
  if (spec.startsWith('node:') || builtinModules.includes(spec)) return 'a Node builtin';
  if (FORBIDDEN_PACKAGES.has(spec)) return 'a Node-only package';
  return null;
}

/** Value imports and re-exports of a file (`import type` / `export type` are erased and skipped). */
function importsOf(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const specs: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) specs.push((node.moduleSpecifier as ts.StringLiteral).text);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier && !node.isTypeOnly)
      specs.push((node.moduleSpecifier as ts.StringLiteral).text);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(node.arguments[0]!)) {
      specs.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return specs;
}

/** Every own source file reachable from `entry`, with the chain of files that leads to it. */
function reachable(entry: string): Map<string, string[]> {
  const chains = new Map<string, string[]>([[entry, [entry]]]);
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    for (const spec of importsOf(file)) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      if (chains.has(target)) continue;
      chains.set(target, [...chains.get(file)!, target]);
      queue.push(target);
    }
  }
  return chains;
}

const show = (chain: string[]) => chain.map((f) => relative(SRC, f)).join(' → ');

describe('@vl/core root entry in a browser', () => {
  it('bundles with esbuild for platform browser (tfjs external)', async () => {
    const result = await build({
      entryPoints: [ROOT_ENTRY],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      external: ['@tensorflow/*'],
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((p) => p.endsWith('src/index.ts'))).toBe(true);
    // Nothing Node-only made it in, even through a dependency.
    expect(
      inputs.filter((p) => p.startsWith('node:') || /node_modules\/(sharp|csv-parse|tar-stream)\//.test(p) || p.includes('src/node/')),
    ).toEqual([]);
    const externals = new Set(Object.values(result.metafile.inputs).flatMap((i) => i.imports.filter((m) => m.external).map((m) => m.path)));
    expect([...externals].filter((p) => !p.startsWith('@tensorflow/'))).toEqual([]);
  });

  it('reaches no file that imports node:*, sharp or src/node/', () => {
    const files = reachable(ROOT_ENTRY);
    expect(files.size).toBeGreaterThan(50);
    const problems: string[] = [];
    for (const [file, chain] of files) {
      if (file.startsWith(NODE_ONLY + '/')) problems.push(`${show(chain)} is in src/node/`);
      for (const spec of importsOf(file)) {
        const why = forbiddenSpecifier(spec);
        if (why) problems.push(`${show(chain)} imports '${spec}' (${why})`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('reaches no file that uses Node globals (process, Buffer, __dirname, require)', () => {
    const problems: string[] = [];
    for (const [file, chain] of reachable(ROOT_ENTRY)) {
      // Comments may name them; code may not (backend.ts reads `globalThis.process` behind a check).
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/(^|[^:])\/\/.*$/gm, '$1');
      const hit = /(?<![.\w$/'"-])(process\.|Buffer\.|__dirname|__filename|require\()/.exec(code);
      if (hit) problems.push(`${show(chain)} uses ${hit[1]}`);
    }
    expect(problems).toEqual([]);
  });

  it('the walk sees a Node-only import when there is one (the check can fail)', () => {
    const nodeFiles = reachable(join(SRC, 'node.ts'));
    const flagged = [...nodeFiles.keys()].filter((f) => importsOf(f).some((s) => forbiddenSpecifier(s) !== null));
    expect(flagged.map((f) => relative(SRC, f))).toEqual(
      expect.arrayContaining(['node/image-decode.ts', 'node/readers.ts', 'node/atomic.ts']),
    );
  });
});
