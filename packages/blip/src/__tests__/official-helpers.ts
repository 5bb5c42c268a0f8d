// Where Salesforce's original BLIP reference fixtures live (fixtures/blip-official) and the key list of each.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensorsHeader } from '@vl/core/node';
import type { OfficialBlipClass } from '../official-keys.js';

const ROOT = fileURLToPath(new URL('../../../../fixtures/blip-official/', import.meta.url));

export const OFFICIAL: Readonly<Record<OfficialBlipClass, string>> = {
  BLIP_Decoder: join(ROOT, 'blipofficial-decoder-seed0'),
  BLIP_Retrieval: join(ROOT, 'blipofficial-retrieval-seed0'),
  BLIP_Pretrain: join(ROOT, 'blipofficial-pretrain-seed0'),
};

export const OFFICIAL_CLASSES = Object.keys(OFFICIAL) as OfficialBlipClass[];

/** name → shape of every entry of a fixture's model.safetensors (the original `state_dict()`). */
export async function officialShapes(cls: OfficialBlipClass): Promise<Map<string, number[]>> {
  const header = await readSafetensorsHeader(join(OFFICIAL[cls], 'model.safetensors'));
  return new Map([...header.entries].map(([k, e]) => [k, [...e.shape]]));
}
