import {
  compareRows,
  formatBytes,
  formatDuration,
  IRun,
  keyMetrics,
  lineageOf,
  lowerIsBetter,
  OperationGuard,
  sortRuns,
  statusLabels
} from '../model';

function run(id: string, extra: Partial<IRun> = {}): IRun {
  return {
    run_id: id,
    run_name: id,
    status: 'FINISHED',
    start_time: null,
    end_time: null,
    duration_ms: null,
    metrics: {},
    params: {},
    lineage: {},
    ...extra
  };
}

describe('formatting', () => {
  it('formats sizes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GB');
    expect(formatBytes(null)).toBe('–');
  });

  it('formats durations for people', () => {
    expect(formatDuration(4200)).toBe('4s');
    expect(formatDuration(65_000)).toBe('1m 5s');
    expect(formatDuration(3_720_000)).toBe('1h 2m');
    expect(formatDuration(null)).toBe('–');
  });

  it('says up to date when nothing is flagged, and names each flag', () => {
    expect(statusLabels([])).toEqual(['up to date']);
    expect(statusLabels(['changed', 'not_pushed', 'missing'])).toEqual(['changed', 'not pushed', 'missing locally']);
  });
});

describe('runs', () => {
  const runs = [
    run('a', { start_time: 1, metrics: { auc: 0.7 }, duration_ms: 30 }),
    run('b', { start_time: 3, metrics: { auc: 0.9, loss: 0.2 }, duration_ms: 10 }),
    run('c', { start_time: 2, metrics: {}, duration_ms: 20 })
  ];

  it('sorts by a metric, runs without it last in both directions', () => {
    expect(sortRuns(runs, 'metrics.auc', true).map(r => r.run_id)).toEqual(['b', 'a', 'c']);
    expect(sortRuns(runs, 'metrics.auc', false).map(r => r.run_id)).toEqual(['a', 'b', 'c']);
  });

  it('sorts by start time and duration', () => {
    expect(sortRuns(runs, 'start_time', true).map(r => r.run_id)).toEqual(['b', 'c', 'a']);
    expect(sortRuns(runs, 'duration_ms', false).map(r => r.run_id)).toEqual(['b', 'c', 'a']);
  });

  it('picks the most common metrics as columns', () => {
    expect(keyMetrics(runs, 1)).toEqual(['auc']);
    expect(keyMetrics(runs)).toEqual(['auc', 'loss']);
  });

  it('compares runs side by side and marks the best value', () => {
    const rows = compareRows({
      metrics: ['auc', 'loss'],
      runs: [
        { run_id: 'a', run_name: 'a', metrics: { auc: 0.7 } },
        { run_id: 'b', run_name: 'b', metrics: { auc: 0.9, loss: 0.25 } }
      ]
    });
    expect(rows).toEqual([
      { metric: 'auc', values: ['0.7000', '0.9000'], best: 1 },
      { metric: 'loss', values: ['–', '0.2500'], best: 1 }
    ]);
  });

  it('marks the lowest value best for losses and errors', () => {
    const rows = compareRows({
      metrics: ['log_loss', 'rmse', 'accuracy'],
      runs: [
        { run_id: 'a', run_name: 'a', metrics: { log_loss: 0.3764, rmse: 2.5, accuracy: 0.8 } },
        { run_id: 'b', run_name: 'b', metrics: { log_loss: 0.3694, rmse: 3.1, accuracy: 0.9 } }
      ]
    });
    expect(rows.map(row => [row.metric, row.best])).toEqual([
      ['log_loss', 1],
      ['rmse', 0],
      ['accuracy', 1]
    ]);
    expect(['val_error', 'mae', 'train_loss'].every(lowerIsBetter)).toBe(true);
    expect(['auc', 'f1', 'precision', 'samples'].some(lowerIsBetter)).toBe(false);
  });

  it('shows lineage in reading order with short data hashes', () => {
    const tags = {
      'mlopshub.data.data/loans.csv': '0123456789abcdef0123456789abcdef',
      'mlopshub.data.count': '1',
      'mlopshub.profile': 'python-cpu',
      'mlopshub.git.commit': 'deadbeef',
      'mlopshub.git.dirty': 'false',
      'mlflow.user': 'alice'
    };
    expect(lineageOf(tags)).toEqual([
      ['git.commit', 'deadbeef'],
      ['git.dirty', 'false'],
      ['profile', 'python-cpu'],
      ['data data/loans.csv', '01234567']
    ]);
  });
});

describe('OperationGuard', () => {
  it('refuses a second operation while one runs, and releases after a failure', async () => {
    const guard = new OperationGuard();
    let finish: () => void = () => undefined;
    const first = guard.run('Pushing', () => new Promise<void>(resolve => (finish = resolve)));
    await expect(guard.run('Pulling', async () => 'never')).rejects.toThrow('Pushing is still running');
    expect(guard.running).toBe('Pushing');
    finish();
    await first;
    await expect(guard.run('Saving', async () => Promise.reject(new Error('dvc failed')))).rejects.toThrow('dvc failed');
    expect(guard.running).toBeNull();
    await expect(guard.run('Pulling', async () => 'done')).resolves.toBe('done');
  });
});
