// Models that ship inside @vl/blip (the `models/` folder of the package), loadable by name wherever a
// checkpoint folder is expected by `blip capfilt` (`--captioner scenes-tiny --filter scenes-tiny`).
// `scenes-tiny` is a tiny BLIP captioner and filter trained on the synthetic captioned scenes by
// scripts/pretrain-scenes.mjs (docs/capfilt.md "The embedded models"); real BLIP checkpoints are folders.
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VlError } from '@vl/core';

/** The role a checkpoint plays in CapFilt: each embedded model has a folder per role. */
export type EmbeddedRole = 'captioner' | 'filter';

/** Names of the models shipped with the package. */
export const EMBEDDED_MODELS = ['scenes-tiny'] as const;
export type EmbeddedModelName = (typeof EMBEDDED_MODELS)[number];

/** The package's models/ folder: `src/` in tests and `dist/` once built both sit one level below it. */
function modelsRoot(): string {
  return fileURLToPath(new URL('../models/', import.meta.url));
}

/** True for a bare name (no path separator, no leading dot): what `resolveCheckpoint` may look up. */
function isBareName(value: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(value);
}

/** The folder of embedded model `name` for `role`; a typed MODEL_UNKNOWN error naming the known ones otherwise. */
export function embeddedModelPath(name: string, role: EmbeddedRole): string {
  if (!(EMBEDDED_MODELS as readonly string[]).includes(name)) {
    throw new VlError('MODEL_UNKNOWN', `no embedded ${role} named '${name}'`, {
      subject: `--${role}`,
      hint: `embedded models: ${EMBEDDED_MODELS.join(', ')}; anything else must be a checkpoint folder (write ./${name} for a folder of that name)`,
    });
  }
  const dir = `${modelsRoot()}${name}/${role}`;
  if (!existsSync(`${dir}/model.safetensors`)) {
    throw new VlError('CHECKPOINT_INVALID', `the embedded ${role} '${name}' is missing from this install`, {
      subject: dir,
      hint: 'reinstall @vl/blip, or rebuild it with `npm run pretrain:scenes`',
    });
  }
  return dir;
}

/**
 * What a `--captioner` / `--filter` value means: an embedded model's name (`scenes-tiny`) gives its
 * shipped folder, even if the working directory holds a folder of that name (pass `./scenes-tiny` for
 * that); an existing path is used as is; a bare name that is neither is refused with the known names.
 * Anything else (a path that does not exist yet) is returned for the loader to report.
 */
export function resolveCheckpoint(value: string, role: EmbeddedRole): string {
  if ((EMBEDDED_MODELS as readonly string[]).includes(value)) return embeddedModelPath(value, role);
  if (value === '' || !isBareName(value)) return value;
  if (existsSync(value) && statSync(value).isDirectory()) return value;
  return embeddedModelPath(value, role);
}
