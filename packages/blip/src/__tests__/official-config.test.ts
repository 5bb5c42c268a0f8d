// The original BLIP config (factory kwargs + med_config.json / bert_config.json) translated to BlipConfig and back,
// and the sizes of a released checkpoint read from its tensor shapes when it comes without a config.json.
import { join } from 'node:path';
import { isVlError } from '@vl/core';
import { readJsonFile } from '@vl/core/node';
import { describe, expect, it } from 'vitest';
import { blipConfigFromOfficial, blipConfigFromOfficialState, blipConfigToOfficial, isOfficialBlipConfig } from '../official-config.js';
import { OFFICIAL, OFFICIAL_CLASSES, officialShapes } from './official-helpers.js';

const read = (cls: keyof typeof OFFICIAL) => readJsonFile(join(OFFICIAL[cls], 'config.json'));

describe('official BLIP config.json', () => {
  it('translates the three fixture configs (ViT from vision_config, text from the med config, tokens)', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      const raw = await read(cls);
      expect(isOfficialBlipConfig(raw)).toBe(true);
      const { config, settings } = blipConfigFromOfficial(raw, cls);
      expect(settings.modelClass).toBe(cls);
      expect(config.visionConfig).toMatchObject({
        hiddenSize: 24,
        intermediateSize: 42, // int(24 × mlp_ratio 1.75)
        numHiddenLayers: 3,
        numAttentionHeads: 3,
        imageSize: 16,
        patchSize: 4,
        layerNormEps: 1e-6,
      });
      expect(config.textConfig).toMatchObject({
        vocabSize: 99, // BLIP_Pretrain: bert_config's 97 + [DEC] + [ENC]
        hiddenSize: 20,
        encoderHiddenSize: 24,
        intermediateSize: 28,
        numHiddenLayers: 3,
        numAttentionHeads: 2,
        maxPositionEmbeddings: 40,
        layerNormEps: 1e-12,
        bosTokenId: 97,
        padTokenId: 0,
        sepTokenId: 3,
        eosTokenId: 3,
      });
      expect(settings.encTokenId).toBe(98);
      if (cls === 'BLIP_Decoder') {
        expect(config.architectures).toEqual(['BlipForConditionalGeneration']);
        expect(settings.prompt).toBe('a picture of ');
        expect(config.textConfig.maxLength).toBe(12);
      } else {
        expect(config.imageTextHiddenSize).toBe(16);
        expect(settings).toMatchObject({ queueSize: 8, momentum: 0.995 });
        const field = cls === 'BLIP_Retrieval' ? 'blipRetrievalTraining' : 'blipPretraining';
        expect(config[field]).toMatchObject({ queueSize: 8, momentum: 0.995 });
        expect(config.encTokenId).toBe(98);
        expect(config.architectures).toEqual([cls === 'BLIP_Retrieval' ? 'BlipForRetrievalTraining' : 'BlipForPretraining']);
      }
    }
  });

  it('round-trips through the official form', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      const a = blipConfigFromOfficial(await read(cls), cls);
      const b = blipConfigFromOfficial(blipConfigToOfficial(a.config, a.settings), `${cls} again`);
      expect(b.config).toEqual(a.config);
      expect(b.settings).toEqual(a.settings);
    }
  });

  it("refuses a class that disagrees with the checkpoint's keys, and a vocabulary whose special tokens are unknown", async () => {
    const raw = (await read('BLIP_Decoder')) as Record<string, unknown>;
    expect(() => blipConfigFromOfficial(raw, 'x', 'BLIP_Retrieval')).toThrow(
      /describes BLIP_Decoder but the checkpoint's keys are those of BLIP_Retrieval/,
    );
    const { tokens: _t, ...noTokens } = raw;
    expect(() => blipConfigFromOfficial(noTokens, 'x')).toThrow(/not bert-base-uncased/);
    const badSizes = { ...raw, 'med_config.json': { ...(raw['med_config.json'] as object), hidden_size: 'wide' } };
    try {
      blipConfigFromOfficial(badSizes, 'cfg.json');
      expect.unreachable();
    } catch (err) {
      expect(isVlError(err, 'CONFIG_INVALID')).toBe(true);
      expect((err as Error).message).toContain('med_config.json.hidden_size');
    }
  });
});

describe('sizes from the tensor shapes (a released .pth without config.json)', () => {
  /** The shapes of a released ViT-B/16 BLIP at 384 pixels, as model_base_retrieval_coco.pth holds them. */
  function baseRetrievalShapes(): Map<string, number[]> {
    const s = new Map<string, number[]>([
      ['visual_encoder.cls_token', [1, 1, 768]],
      ['visual_encoder.pos_embed', [1, 577, 768]],
      ['visual_encoder.patch_embed.proj.weight', [768, 3, 16, 16]],
      ['text_encoder.embeddings.word_embeddings.weight', [30524, 768]],
      ['text_encoder.embeddings.position_embeddings.weight', [512, 768]],
      ['vision_proj.weight', [256, 768]],
      ['image_queue', [256, 57600]],
    ]);
    for (let i = 0; i < 12; i++) {
      s.set(`visual_encoder.blocks.${i}.mlp.fc1.weight`, [3072, 768]);
      s.set(`text_encoder.encoder.layer.${i}.intermediate.dense.weight`, [3072, 768]);
    }
    return s;
  }

  it("reads ViT-B/16 at 384 px and BERT-base with bert-base-uncased's tokens", () => {
    const { config, settings } = blipConfigFromOfficialState(baseRetrievalShapes(), 'BLIP_Retrieval', 'model_base_retrieval_coco.pth');
    expect(config.visionConfig).toMatchObject({
      hiddenSize: 768,
      numHiddenLayers: 12,
      numAttentionHeads: 12,
      intermediateSize: 3072,
      imageSize: 384,
      patchSize: 16,
    });
    expect(config.textConfig).toMatchObject({
      vocabSize: 30524,
      hiddenSize: 768,
      numHiddenLayers: 12,
      numAttentionHeads: 12,
      maxPositionEmbeddings: 512,
      bosTokenId: 30522,
      sepTokenId: 102,
      padTokenId: 0,
    });
    expect(config.imageTextHiddenSize).toBe(256);
    expect(settings).toMatchObject({ encTokenId: 30523, queueSize: 57600 });
  });

  it('refuses a vocabulary that is not bert-base-uncased + 2 (the tiny fixtures need their config.json)', async () => {
    const shapes = await officialShapes('BLIP_Decoder');
    expect(() => blipConfigFromOfficialState(shapes, 'BLIP_Decoder', 'pytorch_model.pth')).toThrow(/99 entries, not bert-base-uncased/);
  });
});
