// The model registry: register/lookup, one registry across module copies (globalThis), typed errors
// for unknown, planned and incapable models, and a taken name refused.
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { isVlError } from '../../errors.js';
import type { AnyModelSpec } from '../contract.js';
import { findModel, getModel, getModelWith, listModels, registerModel, unregisterModel } from '../registry.js';

function spec(name: string, packageName = `@test/${name}`): AnyModelSpec {
  return {
    name,
    packageName,
    description: 'test model',
    checkpoint: {
      configSchema: z.object({}),
      parseConfig: (raw) => raw,
      presets: { tiny: () => ({}) },
      build: () => {
        throw new Error('not built in this test');
      },
      fromPretrained: async () => {
        throw new Error('not loaded in this test');
      },
      savePretrained: async () => {},
      keyMap: { fromOfficial: (m) => new Map(m), toOfficial: () => new Map() },
    },
    objectives: [{ name: 'itc', description: 'contrastive', defaultWeight: 1 }],
    tasks: ['retrieval'],
    verify: async () => ({ title: name, report: { checks: [], passed: true } }),
  };
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return isVlError(err) ? err.code : 'not a VlError';
  }
  return undefined;
};

describe('model registry', () => {
  it('registers, finds and lists models by name', () => {
    const a = spec('zz-test-a');
    registerModel(a);
    expect(getModel('zz-test-a')).toBe(a);
    expect(findModel('zz-test-a')).toBe(a);
    expect(listModels().map((m) => m.name)).toContain('zz-test-a');
    expect(unregisterModel('zz-test-a')).toBe(true);
    expect(findModel('zz-test-a')).toBeUndefined();
  });

  it('is one registry per process: a second module copy sees the same models', async () => {
    const a = spec('zz-test-b');
    registerModel(a);
    // A fresh instance of the module (as an ESM and a CJS copy of @vl/core would be).
    vi.resetModules();
    const copy = await import('../registry.js');
    expect(copy.registerModel).not.toBe(registerModel);
    expect(copy.getModel('zz-test-b')).toBe(a);
    unregisterModel('zz-test-b');
  });

  it('accepts the same package registering twice, refuses another package taking a name', () => {
    registerModel(spec('zz-test-c'));
    registerModel(spec('zz-test-c'));
    expect(codeOf(() => registerModel(spec('zz-test-c', '@other/pkg')))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => registerModel(spec('Bad Name')))).toBe('INVALID_ARGUMENT');
    unregisterModel('zz-test-c');
  });

  it('says whether a model is unknown or lacks a capability', () => {
    expect(codeOf(() => getModel('nosuch'))).toBe('MODEL_UNKNOWN');
    // Model packages register themselves; core alone knows none of them.
    expect(codeOf(() => getModel('coca'))).toBe('MODEL_UNKNOWN');
    registerModel(spec('zz-test-d'));
    expect(getModelWith('zz-test-d', 'verify').name).toBe('zz-test-d');
    expect(codeOf(() => getModelWith('zz-test-d', 'caption'))).toBe('TASK_UNSUPPORTED');
    unregisterModel('zz-test-d');
  });
});
