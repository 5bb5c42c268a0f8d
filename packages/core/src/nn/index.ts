export * from './functional.js';
