// Generation over any decoder: greedy, beam search, top-k / top-p sampling, repetition penalty, min length
// (HF transformers v4.30 semantics).
export type { DecoderStep, DecoderStepOutput, EarlyStopping, GenerateOptions, GenerateOutput } from './types.js';
export { fullSequenceDecoder, type FullSequenceForward } from './decoders.js';
export {
  applyMinLength,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  buildLogitsProcessor,
  buildLogitsWarper,
  type ProcessorSettings,
  type RowProcessor,
  type WarperSettings,
} from './logits-process.js';
export { BeamHypotheses, BeamSearchScorer, type BeamCandidates, type BeamFinal, type BeamStep } from './beam-search.js';
export { generate } from './generate.js';
