// ALBEF config.json at the boundary: official snake_case keys in the file, camelCase in TypeScript,
// and every key of the reference file (timm/BERT fields we do not use, notes) kept by a save.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadAlbef, readAlbefConfig, saveAlbef } from '../checkpoint.js';
import { albefConfigFromJson, albefConfigToJson, ALBEF_BASE } from '../config.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('ALBEF config.json', () => {
  it('reads the official sections under camelCase names', async () => {
    const cfg = await readAlbefConfig(DIR);
    expect(cfg.albefConfig.queueSize).toBe(8);
    expect(cfg.bertConfig.fusionLayer).toBe(2);
    expect(cfg.visionConfig.imgSize).toBe(32);
    expect(cfg.visionConfig.dropPathRate).toBe(0);
  });

  it('a save writes every key and value of the reference file back in snake_case', async () => {
    const model = await loadAlbef(DIR);
    const out = await mkdtemp(join(tmpdir(), 'albef-config-'));
    try {
      await saveAlbef(model, out);
      const before = JSON.parse(await readFile(join(DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
      const after = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(after).toMatchObject(before);
      expect(JSON.stringify(after)).not.toMatch(/"[a-z]+[A-Z]\w*":/); // no camelCase key reaches the file
      expect(await readAlbefConfig(out)).toEqual(model.config);
    } finally {
      await rm(out, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('the presets survive TypeScript → config.json → TypeScript', () => {
    const json = albefConfigToJson(ALBEF_BASE);
    expect((json.bert_config as Record<string, unknown>).fusion_layer).toBe(6);
    expect(albefConfigFromJson(JSON.parse(JSON.stringify(json)))).toEqual(ALBEF_BASE);
  });

  it('names a bad field by its path in the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'albef-bad-'));
    try {
      const json = albefConfigToJson(ALBEF_BASE) as { vision_config: Record<string, unknown> };
      json.vision_config.img_size = 'large';
      await writeFile(join(dir, 'config.json'), JSON.stringify(json));
      await expect(readAlbefConfig(dir)).rejects.toThrow(/vision_config\.img_size must be an integer/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
