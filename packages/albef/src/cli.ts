#!/usr/bin/env node
// `albef` command (npx @vl/albef …): `verify --model DIR --inputs inputs.json --expected expected.json [--tol]`.
import { main } from './command.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 2;
  },
);
