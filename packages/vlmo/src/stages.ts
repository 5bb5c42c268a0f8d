// VLMo's stagewise pretraining (Bao et al. 2022, §3.3), one config per stage: which losses it trains
// (the `loss_names` it sets, hence which heads the model builds), which parameters it freezes (by name
// pattern, core's Module.freeze) and which shared tables it trains without weight decay. Stage 1 is
// image-only masked image modelling with the V-FFN (the official code starts from a BEiT checkpoint
// instead); stage 2 text-only MLM with self-attention and V-FFN frozen; stage 3 image-text ITC + ITM +
// MLM with everything trained. Each stage starts from the previous one's checkpoint (`--init`).
import { VlError } from '@vl/core';
import { parseVlmoConfig, type VlmoConfig, type VlmoLossNames } from './config.js';

export type VlmoStage = 1 | 2 | 3;
export const VLMO_STAGES_LIST: readonly VlmoStage[] = [1, 2, 3];

export interface VlmoStageSpec {
  stage: VlmoStage;
  title: string;
  /** The loss names the stage sets (every other is 0). */
  lossNames: Partial<VlmoLossNames>;
  /** The objectives its forward returns (`losses`), switchable by `vl train` flags. */
  objectives: readonly string[];
  /** Parameters the stage leaves alone (Module.freeze patterns): bit-identical afterwards. */
  freeze: readonly string[];
  /**
   * Trained without weight decay: shared tables the stage reads only some rows of. Rows it never reads
   * get a zero gradient, so Adam moves them by exactly 0 and (without decay) they stay bit-identical.
   */
  noDecay: readonly string[];
}

/**
 * Stage 2's frozen set: everything the image-only route reads except the tables shared with text —
 * patch embedding, class token, absolute positions, the shared self-attention (with its pre-norm and
 * layer scales), the V-FFN and its norm, and the final norm. With the image rows of the relative table
 * and the image token type untouched (noDecay), image-only outputs are the same after stage 2.
 */
const STAGE2_FROZEN = [
  'transformer.patch_embed.**',
  'transformer.cls_token',
  'transformer.pos_embed',
  'transformer.blocks.*.norm1.*',
  // The shared attention; with separate attention (the ablation) only the image expert's.
  'transformer.blocks.*.attn.qkv.*',
  'transformer.blocks.*.attn.q_bias',
  'transformer.blocks.*.attn.v_bias',
  'transformer.blocks.*.attn.proj.*',
  'transformer.blocks.*.attn.*_imag.*',
  'transformer.blocks.*.gamma_1',
  'transformer.blocks.*.gamma_2',
  'transformer.blocks.*.mlp_imag.**',
  'transformer.blocks.*.norm2_imag.*',
  'transformer.norm.*',
] as const;

export const VLMO_STAGES: Readonly<Record<VlmoStage, VlmoStageSpec>> = {
  1: {
    stage: 1,
    title: 'image-only masked image modelling (V-FFN and self-attention)',
    lossNames: { mim: 1 },
    objectives: ['mim'],
    // Only the image route receives gradients; the text side gets none and so is unchanged anyway.
    freeze: [],
    // BEiT's no_weight_decay set (its tokens and relative position tables).
    noDecay: ['transformer.cls_token', 'transformer.pos_embed', 'relative_position_bias_table'],
  },
  2: {
    stage: 2,
    title: 'text-only masked language modelling (L-FFN and text embeddings; self-attention and V-FFN frozen)',
    lossNames: { textmlm: 1 },
    objectives: ['textmlm'],
    freeze: STAGE2_FROZEN,
    noDecay: ['relative_position_bias_table', 'token_type_embeddings.weight'],
  },
  3: {
    stage: 3,
    title: 'image-text ITC + ITM (hard negatives) + MLM, all experts trained',
    lossNames: { itc: 1, itm: 1, mlm: 1 },
    objectives: ['itc', 'itm', 'mlm'],
    freeze: [],
    // The official set_schedule: only biases and norms (core's rank ≤ 1 rule) go without decay.
    noDecay: [],
  },
};

export function vlmoStage(stage: number): VlmoStageSpec {
  const spec = VLMO_STAGES[stage as VlmoStage];
  if (!spec) {
    throw new VlError('INVALID_ARGUMENT', `stage must be 1, 2 or 3, got ${stage}`, {
      subject: 'VLMo stage',
      hint: '1 image-only MIM, 2 text-only MLM, 3 image-text ITC + ITM + MLM',
    });
  }
  return spec;
}

/**
 * The config of a stage: the sizes of `base` with the stage's loss names (all others 0), which decide
 * the heads and, for stage 2, that no layer has a VL-FFN. `visualVocabSize` sizes stage 1's MIM head.
 */
export function vlmoStageConfig(base: VlmoConfig, stage: VlmoStage, options: { visualVocabSize?: number } = {}): VlmoConfig {
  const names = Object.fromEntries(Object.keys(base.vlmoConfig.lossNames).map((k) => [k, 0]));
  const section: Record<string, unknown> = {
    ...base.vlmoConfig,
    lossNames: { ...names, mim: 0, ...VLMO_STAGES[stage].lossNames },
  };
  if (options.visualVocabSize !== undefined) section.visualVocabSize = options.visualVocabSize;
  // The derived BertConfig is re-derived from the section (its dropout follows drop_path_rate).
  const { bertConfig: _derived, ...rest } = base;
  return parseVlmoConfig({ ...rest, vlmoConfig: section }, `stage ${stage} config`);
}
