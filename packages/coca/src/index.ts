// @vl/coca: the model composes @vl/core building blocks (filled in by its model issue).
export { initRuntime } from '@vl/core';
