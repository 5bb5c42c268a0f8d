// Pretraining objectives: ITC, ITM (+ hard negatives), MLM (+ masking), LM, MIM (+ block masking).
export * from './losses.js';
export * from './itc.js';
export * from './itm.js';
export * from './mlm.js';
export * from './lm.js';
export * from './mim.js';
