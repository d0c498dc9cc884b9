/**
 * Writes src/contract.ts: the TypeScript types of the release pipeline's API,
 * made by openapi-typescript from the pipeline's own OpenAPI document, so the
 * sidebar's publish body is typed by the contract the pipeline and this
 * extension's server side check it against (one source, no hand-written copy).
 *
 *   jlpm build:contract            write src/contract.ts
 *   node scripts/contract.mjs -    print what it would write (the drift test compares it)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import openapiTS, { astToString } from 'openapi-typescript';

const DOCUMENT = new URL('../../../hub/mlopshub/services/pipeline/openapi.json', import.meta.url);
const OUTPUT = new URL('../src/contract.ts', import.meta.url);
const HEADER = `/**
 * Generated: do not edit. The release pipeline's API as TypeScript types, made by
 * openapi-typescript from hub/mlopshub/services/pipeline/openapi.json with
 * \`jlpm build:contract\` (scripts/contract.mjs) in extensions/mlopshub-lab.
 * Change the document, then run that again; src/__tests__/contract.spec.ts
 * fails while this file differs from what the document makes.
 */

`;

/** The text of src/contract.ts for the document as it is now. */
export async function contractSource() {
  // defaultNonNullable off: a field with a default (batch.rev) may be left out of a request, the pipeline fills it in.
  const ast = await openapiTS(JSON.parse(readFileSync(DOCUMENT, 'utf8')), { defaultNonNullable: false, silent: true });
  return HEADER + astToString(ast);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const source = await contractSource();
  if (process.argv[2] === '-') {
    process.stdout.write(source);
  } else {
    writeFileSync(OUTPUT, source);
    console.info(`wrote ${fileURLToPath(OUTPUT)}`);
  }
}
