// The two built entries share one copy of what they have in common (code splitting): an error thrown
// by @vl/core/node is an instance of @vl/core's VlError, and a Module loads through either entry.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('@vl/core and @vl/core/node (built)', () => {
  it('share VlError: a node-entry failure is instanceof the root class', async () => {
    const core = await import('@vl/core');
    const node = await import('@vl/core/node');
    const dir = mkdtempSync(join(tmpdir(), 'vl-entries-'));
    writeFileSync(join(dir, 'bad.json'), '{"a": 1, "a": 2}');
    const err = await node.readJsonFile(join(dir, 'bad.json')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(core.VlError);
    expect(core.isVlError(err, 'CONFIG_INVALID')).toBe(true);
  });

  it('keep Node-only names out of the root entry', async () => {
    const core = (await import('@vl/core')) as Record<string, unknown>;
    const node = (await import('@vl/core/node')) as Record<string, unknown>;
    for (const name of ['readSafetensorsFile', 'decodeImage', 'readDataset', 'Trainer', 'writeFileAtomic', 'loadBertTokenizer']) {
      expect(core[name], name).toBeUndefined();
      expect(typeof node[name], name).toBe('function');
    }
    expect(Object.keys(node).filter((k) => k in core)).toEqual([]);
  });
});
