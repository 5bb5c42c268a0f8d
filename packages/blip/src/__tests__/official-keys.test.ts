// The key map between Salesforce's original BLIP state dicts and ours: names both ways, checked against the
// complete key lists of the three reference fixtures (BLIP_Decoder, BLIP_Retrieval, BLIP_Pretrain).
import { join } from 'node:path';
import { initRuntime } from '@vl/core';
import { readJsonFile, readSafetensorsFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { BlipForConditionalGeneration } from '../modeling.js';
import { blipConfigFromOfficial, inferenceConfig } from '../official-config.js';
import {
  detectBlipLayout,
  fromOfficialState,
  officialClassOf,
  officialToOurKey,
  ourToOfficialKey,
  sharedEncoderKey,
  toOfficialState,
  unusedReason,
} from '../official-keys.js';
import { BlipForPretraining, parsePretrainingOptions } from '../pretraining.js';
import { BlipForRetrievalTraining } from '../retrieval-training.js';
import { OFFICIAL, OFFICIAL_CLASSES, officialShapes } from './official-helpers.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('official BLIP key names', () => {
  it('renames the ViT, the twins and the queues, and keeps the BERT names', () => {
    const pairs: [string, string][] = [
      ['visual_encoder.cls_token', 'vision_model.embeddings.class_embedding'],
      ['visual_encoder.pos_embed', 'vision_model.embeddings.position_embedding'],
      ['visual_encoder.patch_embed.proj.weight', 'vision_model.embeddings.patch_embedding.weight'],
      ['visual_encoder.blocks.11.attn.qkv.weight', 'vision_model.encoder.layers.11.self_attn.qkv.weight'],
      ['visual_encoder.blocks.0.attn.proj.bias', 'vision_model.encoder.layers.0.self_attn.projection.bias'],
      ['visual_encoder.blocks.3.norm1.weight', 'vision_model.encoder.layers.3.layer_norm1.weight'],
      ['visual_encoder.blocks.3.norm2.bias', 'vision_model.encoder.layers.3.layer_norm2.bias'],
      ['visual_encoder.blocks.2.mlp.fc2.weight', 'vision_model.encoder.layers.2.mlp.fc2.weight'],
      ['visual_encoder.norm.weight', 'vision_model.post_layernorm.weight'],
      ['visual_encoder_m.blocks.1.attn.qkv.bias', 'vision_model_m.encoder.layers.1.self_attn.qkv.bias'],
      ['visual_encoder_m.cls_token', 'vision_model_m.embeddings.class_embedding'],
      ['image_queue', 'queues.image_queue'],
      ['text_queue', 'queues.text_queue'],
      ['idx_queue', 'queues.idx_queue'],
      ['queue_ptr', 'queues.queue_ptr'],
      ['text_encoder.encoder.layer.0.crossattention.self.key.weight', 'text_encoder.encoder.layer.0.crossattention.self.key.weight'],
      ['text_decoder.bert.embeddings.word_embeddings.weight', 'text_decoder.bert.embeddings.word_embeddings.weight'],
      ['text_decoder.cls.predictions.transform.dense.weight', 'text_decoder.cls.predictions.transform.dense.weight'],
      ['text_encoder_m.embeddings.position_ids', 'text_encoder_m.embeddings.position_ids'],
      ['vision_proj_m.weight', 'vision_proj_m.weight'],
      ['itm_head.bias', 'itm_head.bias'],
      ['temp', 'temp'],
    ];
    for (const [official, ours] of pairs) {
      expect(officialToOurKey(official), official).toBe(ours);
      expect(ourToOfficialKey(ours), ours).toBe(official);
    }
    // BLIP_Retrieval's pointer has its own name; ours is one pointer for both training classes.
    expect(officialToOurKey('ptr_queue')).toBe('queues.queue_ptr');
    // No partial matches: `norm` is a prefix of `norm1` only as a segment.
    expect(officialToOurKey('visual_encoder.normx.weight')).toBe('visual_encoder.normx.weight');
  });

  it('round-trips every key of the three reference state dicts', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      for (const key of (await officialShapes(cls)).keys()) {
        if (key === 'ptr_queue') continue;
        expect(ourToOfficialKey(officialToOurKey(key)), key).toBe(key);
      }
    }
  });

  it('tells the layout and the original class from the keys', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      const keys = [...(await officialShapes(cls)).keys()];
      expect(detectBlipLayout(keys)).toBe('official');
      expect(officialClassOf(keys)).toBe(cls);
    }
    expect(detectBlipLayout(['vision_model.embeddings.class_embedding', 'text_decoder.bert.x'])).toBe('hf');
    expect(detectBlipLayout(['something.else'])).toBeNull();
  });

  it('our full state dict of each class has exactly the original state_dict() keys and shapes (tied entries included)', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      const dir = OFFICIAL[cls];
      const { config } = blipConfigFromOfficial(await readJsonFile(join(dir, 'config.json')), dir);
      const { blipPretraining, blipRetrievalTraining, encTokenId: _e, ...base } = config;
      const model =
        cls === 'BLIP_Decoder'
          ? new BlipForConditionalGeneration(inferenceConfig(config))
          : cls === 'BLIP_Retrieval'
            ? new BlipForRetrievalTraining(base as typeof config, blipRetrievalTraining as object)
            : new BlipForPretraining(base as typeof config, parsePretrainingOptions(blipPretraining));
      const ours = new Map([...model.stateDict()].map(([k, t]) => [k, [...t.shape]]));
      const official = toOfficialState(ours, { officialClass: cls, copy: (v) => v });
      expect(new Map([...official].sort()), cls).toEqual(new Map([...(await officialShapes(cls))].sort()));
      model.dispose();
    }
  });
});

describe('fromOfficialState', () => {
  it('resolves the BLIP_Pretrain ties for BlipForPretraining and keeps text_decoder.bert.* for a captioner', async () => {
    const { tensors } = await readSafetensorsFile(join(OFFICIAL.BLIP_Pretrain, 'model.safetensors'));
    const pre = fromOfficialState(tensors, 'BlipForPretraining');
    expect(pre.unused).toEqual([]);
    expect(pre.tieMismatches).toEqual([]);
    expect(pre.tied.map((t) => t.key)).toContain('text_decoder.bert.encoder.layer.2.crossattention.self.key.weight');
    expect(pre.tied.map((t) => t.key)).toContain('text_decoder.cls.predictions.decoder.bias');
    expect(
      [...pre.tensors.keys()].some((k) =>
        /^text_decoder\.bert\.(embeddings|encoder\.layer\.\d+\.(crossattention|intermediate|output))/.test(k),
      ),
    ).toBe(false);
    // Everything the pretrain class ties is one of the duplicates; the decoder keeps its own self-attention.
    expect(sharedEncoderKey('text_decoder.bert.encoder.layer.0.attention.self.query.weight')).toBeNull();
    expect(sharedEncoderKey('text_decoder.bert.encoder.layer.0.output.dense.bias')).toBe('text_encoder.encoder.layer.0.output.dense.bias');

    const cap = fromOfficialState(tensors, 'BlipForConditionalGeneration');
    expect(cap.tied.map((t) => t.key)).toEqual(['text_decoder.cls.predictions.decoder.bias']);
    expect(cap.tensors.has('text_decoder.bert.encoder.layer.1.intermediate.dense.weight')).toBe(true);
    const reasons = new Map(cap.unused.map((u) => [u.key, u.reason]));
    expect(reasons.get('text_encoder.embeddings.word_embeddings.weight')).toMatch(/text encoder.*not part of BlipForConditionalGeneration/);
    expect(reasons.get('visual_encoder_m.cls_token')).toMatch(/momentum twin/);
    expect(reasons.get('image_queue')).toMatch(/queue/);
    expect(reasons.get('temp')).toMatch(/temperature/);
    expect(reasons.get('itm_head.weight')).toMatch(/ITM head/);
    expect(cap.unused.length + cap.tied.length + cap.tensors.size).toBe(tensors.size);
  });

  it('reports a tied pair whose values differ, and keys that belong to no part of BLIP', async () => {
    const { tensors } = await readSafetensorsFile(join(OFFICIAL.BLIP_Pretrain, 'model.safetensors'));
    const bad = new Map(tensors);
    const dup = 'text_decoder.bert.encoder.layer.0.output.dense.weight';
    const t = bad.get(dup)!;
    const data = Float32Array.from(t.data);
    data[0] = (data[0] as number) + 1;
    bad.set(dup, { ...t, data });
    bad.set('some_head.weight', t);
    const r = fromOfficialState(bad, 'BlipForPretraining');
    expect(r.tieMismatches).toEqual([{ key: dup, source: 'text_encoder.encoder.layer.0.output.dense.weight' }]);
    expect(r.unknown).toEqual(['some_head.weight']);
    expect(unusedReason('some_head.weight', 'BlipForConditionalGeneration')).toBeNull();
  });

  it('toOfficialState writes back what fromOfficialState dropped: a full round trip of each reference file, bit for bit', async () => {
    for (const cls of OFFICIAL_CLASSES) {
      const { tensors } = await readSafetensorsFile(join(OFFICIAL[cls], 'model.safetensors'));
      const target =
        cls === 'BLIP_Decoder'
          ? 'BlipForConditionalGeneration'
          : cls === 'BLIP_Retrieval'
            ? 'BlipForRetrievalTraining'
            : 'BlipForPretraining';
      const ours = fromOfficialState(tensors, target).tensors;
      const back = toOfficialState(ours, { officialClass: cls, copy: (v) => ({ ...v, data: v.data.slice() }) });
      expect([...back.keys()].sort(), cls).toEqual([...tensors.keys()].sort());
      for (const [k, v] of tensors) expect(Array.from(back.get(k)!.data), k).toEqual(Array.from(v.data));
    }
  });
});
