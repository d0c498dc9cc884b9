/// <reference types="node" />
// Node's types come with jest (@jest/types); this spec runs the generator in Node.

import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';

import { ENDED_STATES, isMoving, MODEL_NAME, MODEL_NAME_RULE, RELEASE_STATES } from '../release';

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

describe("the release states and the model-name rule (src/release.ts) are the pipeline OpenAPI document's", () => {
  const document = JSON.parse(readFileSync(join(extension, '..', '..', 'hub', 'mlopshub', 'services', 'pipeline', 'openapi.json'), 'utf8'));
  const schemas = document.components.schemas;

  it("lists every state of a release, in the document's order, each once", () => {
    // tsc already refuses RELEASE_STATES when it misses a state of the generated union; this holds it to the document.
    expect(RELEASE_STATES).toEqual(schemas.Release.properties.state.enum);
    expect(new Set(RELEASE_STATES).size).toBe(RELEASE_STATES.length);
    const filter = document.paths['/api/releases'].get.parameters.find((parameter: { name: string }) => parameter.name === 'state');
    expect(RELEASE_STATES).toEqual(filter.schema.enum);
  });

  it('stops following a release on its page only in a state where the sidebar has stopped too', () => {
    expect(ENDED_STATES.filter(state => isMoving(state))).toEqual([]);
  });

  it("checks a model name with the document's pattern and states it in the document's words", () => {
    expect(MODEL_NAME.source).toBe(schemas.PublishRequest.properties.name.pattern);
    expect(schemas.PublishRequest.properties.name.description).toBe(`a model name: ${MODEL_NAME_RULE}`);
  });
});
