/// <reference types="node" />
// Node's types come with jest (@jest/types); this spec runs the generator in Node.

import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';

const extension = join(__dirname, '..', '..');

describe("the TypeScript types of the pipeline's API (src/contract.ts)", () => {
  it('are what openapi-typescript makes from the pipeline OpenAPI document as it is now', () => {
    // The generator runs as `jlpm build:contract` does; it is an ES module, so in its own Node process.
    const generated = execFileSync(process.execPath, [join(extension, 'scripts', 'contract.mjs'), '-'], { encoding: 'utf8' });
    const checkedIn = readFileSync(join(extension, 'src', 'contract.ts'), 'utf8');
    if (generated !== checkedIn) {
      const generatedLines = generated.split('\n');
      const checkedInLines = checkedIn.split('\n');
      const line = generatedLines.findIndex((text, index) => text !== checkedInLines[index]);
      throw new Error(
        `src/contract.ts differs from what hub/mlopshub/services/pipeline/openapi.json makes, from line ${line + 1}:\n` +
          `  checked in: ${checkedInLines[line] ?? '(end of file)'}\n  generated:  ${generatedLines[line] ?? '(end of file)'}\n` +
          'Run `jlpm build:contract` in extensions/mlopshub-lab and commit src/contract.ts (with the code that uses it).'
      );
    }
    expect(checkedIn).toContain('PublishRequest: {');
  });
});
