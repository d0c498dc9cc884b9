import {
  auditQuery,
  decisionProblem,
  exampleBody,
  exampleRequest,
  listInterval,
  thresholdRows,
  IRelease,
  isMoving,
  pollDelay,
  modelNameProblem,
  releaseLineage,
  releaseMetrics,
  signatureColumns,
  stateLabel,
  stepLines,
  suggestedName
} from '../release';

function release(extra: Partial<IRelease> = {}): IRelease {
  return {
    id: 'rel-1',
    model_name: 'loans',
    version: '1',
    model_uri: 'runs:/abc/model',
    run_id: 'abc',
    team: 'sme-credit',
    kind: 'online',
    description: '',
    publisher: 'ann',
    state: 'registered',
    steps: ['registered', 'gates', 'staging', 'approval', 'production'].map(name => ({ name, status: 'pending', detail: '' })),
    gate_results: [],
    endpoints: {},
    approver: null,
    comment: '',
    reason: '',
    created: '',
    updated: '',
    ...extra
  };
}

describe('release states', () => {
  it.each([
    ['registered', true],
    ['gating', true],
    ['staging', true],
    ['approved', true],
    ['awaiting_approval', false],
    ['gates_failed', false],
    ['production', false],
    ['rejected', false],
    ['rolled_back', false],
    ['superseded', false],
    ['failed', false]
  ])('%s moves by itself: %s', (state, moving) => {
    expect(isMoving(state)).toBe(moving);
  });

  it('keeps following a release that awaits approval, slowly, and stops once it has ended', () => {
    expect(pollDelay('gating')).toBe(1500);
    expect(pollDelay('awaiting_approval')).toBe(5000);
    expect(pollDelay('production')).toBeNull();
    expect(pollDelay('gates_failed')).toBeNull();
  });

  it('labels states in words', () => {
    expect(stateLabel('awaiting_approval')).toBe('awaiting approval');
    expect(stateLabel('production')).toBe('in production');
    expect(stateLabel('some_new_state')).toBe('some new state');
  });

  it('shows each step with its label, mark and the pipeline detail, in order', () => {
    const steps = release().steps.map(step =>
      step.name === 'registered'
        ? { ...step, status: 'passed', detail: 'loans version 1' }
        : step.name === 'gates'
          ? { ...step, status: 'failed', detail: 'metrics: auc 0.7 < min 0.75' }
          : step
    );
    expect(stepLines({ steps })).toEqual([
      { name: 'registered', label: 'Registered', status: 'passed', mark: '✓', detail: 'loans version 1' },
      { name: 'gates', label: 'Gates', status: 'failed', mark: '✗', detail: 'metrics: auc 0.7 < min 0.75' },
      { name: 'staging', label: 'Staging endpoint', status: 'pending', mark: '○', detail: '' },
      { name: 'approval', label: 'Approval', status: 'pending', mark: '○', detail: '' },
      { name: 'production', label: 'Production', status: 'pending', mark: '○', detail: '' }
    ]);
  });
});

describe('model names', () => {
  it.each([
    ['loans', null],
    ['loans-default_v2.1', null],
    ['9lives', null],
    ['', 'give the model a name'],
    ['x'.repeat(64), 'the name is 64 characters; at most 63: shorten it (nothing is cut for you)'],
    ['-loans', "use letters, digits, '_', '.' or '-', starting with a letter or digit"],
    ['bad name!', "use letters, digits, '_', '.' or '-', starting with a letter or digit"]
  ])('%p -> %p', (name, problem) => {
    expect(modelNameProblem(name)).toBe(problem);
  });

  it('suggests the artifact name, or the experiment for a generic "model", made valid', () => {
    expect(suggestedName({ name: 'scorer', experiment: 'loans' })).toBe('scorer');
    expect(suggestedName({ name: 'model', experiment: 'credit default' })).toBe('credit-default');
    expect(suggestedName({ name: 'model', experiment: null })).toBe('model');
    expect(suggestedName({ name: 'model', experiment: '__/x' })).toBe('x');
    // Too long stays whole, and the form says so: a silent cut could name another model.
    expect(suggestedName({ name: 'y'.repeat(80), experiment: null })).toBe('y'.repeat(80));
    expect(modelNameProblem(suggestedName({ name: 'y'.repeat(80), experiment: null }))).toContain('80 characters; at most 63');
  });
});

describe('example request', () => {
  const signature = {
    name: 'signature_and_example',
    passed: true,
    reason: 'ok',
    details: { signature: { inputs: '[{"type": "double", "name": "income"}, {"type": "double", "name": "debt"}]' } }
  };

  it('reads the input columns from the signature gate', () => {
    expect(signatureColumns(release({ gate_results: [signature] }))).toEqual(['income', 'debt']);
    expect(signatureColumns(release())).toBeNull();
    const tensor = { ...signature, details: { signature: { inputs: '[{"type": "tensor", "tensor-spec": {}}]' } } };
    expect(signatureColumns(release({ gate_results: [tensor] }))).toBeNull();
  });

  it('builds a curl line with the workspace token and a dataframe_split body of the columns', () => {
    const url = 'http://127.0.0.1:8000/services/models/loans/staging/invocations';
    expect(exampleRequest(url, ['income', 'debt'])).toBe(
      [
        `curl -X POST '${url}' \\`,
        '  -H "Authorization: token $JUPYTERHUB_API_TOKEN" \\',
        "  -H 'Content-Type: application/json' \\",
        `  -d '{"dataframe_split":{"columns":["income","debt"],"data":[[0,0]]}}'`
      ].join('\n')
    );
  });

  it('uses placeholders without columns and quotes single quotes for the shell', () => {
    expect(exampleRequest('http://h/x', null)).toContain(`-d '{"dataframe_split":{"columns":["<feature>"],"data":[["<value>"]]}}'`);
    expect(exampleRequest('http://h/x', ["it's"])).toContain(`"columns":["it'\\''s"]`);
  });
});

describe('what a reviewer reads', () => {
  const gates = [
    { name: 'lineage', passed: true, reason: 'ok', details: { commit: 'a1b2c3d4e5f60718293a', data: { 'data/loans.csv': '0123456789abcdef' } } },
    { name: 'metrics', passed: true, reason: 'ok', details: { metrics: { auc: 0.81, accuracy: 0.9 }, thresholds: {} } }
  ];

  it('takes metrics from the metrics gate, sorted', () => {
    expect(releaseMetrics(release({ gate_results: gates }))).toEqual([
      ['accuracy', 0.9],
      ['auc', 0.81]
    ]);
    expect(releaseMetrics(release())).toEqual([]);
  });

  it('takes the commit and data versions from the lineage gate', () => {
    expect(releaseLineage(release({ gate_results: gates }))).toEqual([
      ['commit', 'a1b2c3d4e5f6'],
      ['data data/loans.csv', '01234567']
    ]);
  });
});

describe('the review and audit helpers', () => {
  it('puts hold-out metrics against their thresholds, metrics without one last', () => {
    const gate = {
      name: 'metrics',
      passed: false,
      reason: '',
      details: { metrics: { auc: 0.7, log_loss: 0.4, f1: 0.5 }, thresholds: { auc: { min: 0.75 }, log_loss: { max: 0.5 } } }
    };
    expect(thresholdRows(release({ gate_results: [gate] }))).toEqual([
      { metric: 'auc', value: 0.7, bound: '≥ 0.75', met: false },
      { metric: 'log_loss', value: 0.4, bound: '≤ 0.5', met: true },
      { metric: 'f1', value: 0.5, bound: '', met: null }
    ]);
  });

  it('builds the audit query from the filter: empty fields left out, local times in UTC', () => {
    const query = auditQuery({ model: ' loans ', actor: '', action: 'approved', since: '2026-12-01T09:00', until: 'not a time' });
    expect(query).toEqual({ model: 'loans', action: 'approved', since: new Date('2026-12-01T09:00').toISOString() });
  });

  it('requires a comment for both decisions', () => {
    expect(decisionProblem('approve', '  ')).toContain('Say what you checked');
    expect(decisionProblem('reject', '')).toContain('Say why');
    expect(decisionProblem('approve', 'ok')).toBeNull();
  });

  it('looks at lists often while a release moves by itself', () => {
    expect(listInterval([{ state: 'gating' }, { state: 'production' }])).toBe(2000);
    expect(listInterval([{ state: 'awaiting_approval' }])).toBe(10000);
  });

  it('builds the example body from the signature columns', () => {
    expect(exampleBody(['amount', 'income'])).toEqual({ dataframe_split: { columns: ['amount', 'income'], data: [[0, 0]] } });
  });
});
