export * from './constants.ts';
export * from './backends.ts';
export * from './merkle.ts';
export { buildDescriptor } from './descriptor.ts';
