import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { Albef, albefConfig } from '@vl/albef';
await initRuntime({ backend: 'wasm' });
const B = 16, T = 16;
const model = new Albef(albefConfig('tiny', { bert_config: { vocab_size: 160 }, albef_config: { queue_size: 64 } }), new Rng(0));
const rng = new Rng(1);
const px = new Float32Array(B*3*32*32).map(()=>rng.normal());
const ids = new Int32Array(B*T).map((_, i)=> i%T===0?2: 5+rng.int(100)); const mask = new Int32Array(B*T).fill(1);
const batch = { pixels: tf.tensor4d(px,[B,3,32,32]), inputIds: ids, attentionMask: mask, seqLength: T };
model.eval();
for (const objectives of [{itm:{enabled:false}, mlm:{enabled:false}}, {itc:{enabled:false}, mlm:{enabled:false}}, {itc:{enabled:false}, itm:{enabled:false}}, {}]) {
  try { const t0=performance.now(); const r = model.forward(batch, {rng: new Rng(1)}, {}); console.log('ok', JSON.stringify(objectives), r.loss.dataSync()[0]); } catch (e) { console.log('fail', JSON.stringify(objectives), e.message.slice(0,80)); }
  model.options = { objectives };
}
