// @vl/coca: CoCa and CLIP as open_clip v3.3.0 builds them, on @vl/core — open_clip's key names,
// the attentional pooler, the captioning decoder, CoCaLoss in one forward, OpenCLIP-exact generation
// (greedy, top-k/top-p, grouped beam search) with an optional KV cache, and verify. Importing it registers
// the models `coca` and `clip` in @vl/core's registry (a declared side effect, see package.json).
import { registerModel } from '@vl/core';
import { clipModel, cocaModel } from './model-spec.js';

registerModel(cocaModel);
registerModel(clipModel);

export { initRuntime } from '@vl/core';
export { clipModel, cocaModel } from './model-spec.js';
export {
  clipPreset,
  cocaPreset,
  isCocaConfig,
  OPENAI_MEAN,
  OPENAI_STD,
  openClipConfigSchema,
  openClipConfigToJson,
  parseOpenClipConfig,
  type MultimodalCfg,
  type OpenClipConfig,
  type OpenClipModelCfg,
  type OpenClipPresetName,
  type PresetOverrides,
  type TextCfg,
  type VisionCfg,
} from './config.js';
export { type BuildOptions, Clip, CoCa, type CocaForwardOutput, INIT_LOGIT_SCALE, MAX_LOGIT_SCALE } from './model.js';
export {
  causalAllowed,
  MASK_VALUE,
  MultimodalDecoder,
  textAttentionMask,
  TextTower,
  VisionTower,
  type TextOutput,
  type VisionOutput,
} from './towers.js';
export { captionLoss, clipLoss, cocaLoss, contrastiveLogits, type CocaLossOutput, type CocaLossWeights } from './loss.js';
export { type CocaGenerateOptions, generateCoca, type GenerationType } from './generation.js';
export {
  checkKind,
  detectOpenClipKind,
  fromOfficialStateDict,
  loadClip,
  loadCoca,
  readOpenClipConfig,
  saveOpenClip,
  toOfficialStateDict,
  type OpenClipKind,
} from './checkpoint.js';
export {
  clipReferenceOutputs,
  cocaReferenceOutputs,
  generateOptionsFromJson,
  verifyClip,
  verifyCoca,
  type VerifyOptions,
} from './verify.js';
export { bertToOpenClipIds, fitText, openClipSpecialIds } from './text.js';
export { bytesToUnicode, cleanLower, CLIP_BPE_FILE, ClipTokenizer } from './clip-tokenizer.js';
export {
  bpeCaptionTokenizer,
  captionImages,
  captionPixels,
  type CaptionTokenizer,
  type CocaCaptionOptions,
  decodeCaptions,
  generateOptions,
  loadCocaTokenizer,
  openClipWordIds,
  readImages,
  wordPieceCaptionTokenizer,
} from './caption.js';
export { type CocaCaptionEvalOptions, type CocaCaptionEvalResult, evaluateCocaCaptioning } from './caption-eval.js';
export { promptsFor, zeroShotAccuracy, zeroShotLogits, zeroShotWeights } from './zero-shot.js';
export { openClipRowsFromBert, type OpenClipTrainOptions, type OpenClipTrainSummary, trainConfig, trainOpenClip } from './train.js';
export {
  evaluateOpenClip,
  type OpenClipEvalOptions,
  type OpenClipEvalResult,
  type OpenClipEvalTask,
  SYNTH_BACKGROUND_TEMPLATES,
} from './evaluate.js';
export { ablationRows, cocaAblation } from './ablation.js';
