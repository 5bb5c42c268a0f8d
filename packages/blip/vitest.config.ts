// The repo's shared vitest config (../../vitest.shared.ts).
export { default } from '../../vitest.shared';
