// @vl/vlmo: VLMo (microsoft/unilm `vlmo/`) on @vl/core — the Multiway transformer under the official key
// names, image-only / text-only / fusion modes, ITC / ITM / MLM heads, checkpoint loading (folders and
// released .pt files) and verify. Importing it registers the model `vlmo` in @vl/core's registry (a
// declared side effect, see package.json).
import { registerModel } from '@vl/core';
import { vlmoModel } from './model-spec.js';

registerModel(vlmoModel);

export { initRuntime } from '@vl/core';
export { vlmoModel } from './model-spec.js';
export {
  parseVlmoConfig,
  VLMO_ARCH_KWARGS,
  VLMO_ARCHS,
  VLMO_IMAGE_NORM,
  vlmoConfigFromJson,
  vlmoConfigSchema,
  vlmoConfigToJson,
  vlmoDims,
  vlmoPreset,
  type VlmoArch,
  type VlmoBertConfig,
  type VlmoConfig,
  type VlmoDims,
  type VlmoLossNames,
  type VlmoPresetName,
  type VlmoSection,
  type VlmoTokens,
  type VlmoTransformerKwargs,
} from './config.js';
export {
  ItcHead,
  ItmHead,
  MultiwayTransformer,
  Vlmo,
  VLMO_LAYER_PRESET,
  type FittedText,
  type VlmoForwardOptions,
  type VlmoFusionOutput,
  type VlmoImageOptions,
  type VlmoMode,
  type VlmoTextOptions,
  type VlmoUnimodalOutput,
} from './model.js';
export {
  allNumRelativeDistance,
  fusionRelativePositionIndex,
  imageRelativePositionIndex,
  numRelativeDistance,
  relativePositionBias,
  textRelativePositionIndex,
  type RelativeIndex,
} from './relative-position.js';
export {
  fromOfficialStateDict,
  loadVlmo,
  readVlmoConfig,
  saveVlmo,
  toOfficialStateDict,
  VLMO_LEGACY_KEYS,
  type LoadVlmoOptions,
} from './checkpoint.js';
export {
  parseReferenceInputs,
  verifyVlmo,
  VLMO_MLM_LOSS_SCALE,
  vlmoItcLoss,
  vlmoReferenceOutputs,
  type VerifyVlmoOptions,
  type VlmoReferenceInputs,
} from './verify.js';
