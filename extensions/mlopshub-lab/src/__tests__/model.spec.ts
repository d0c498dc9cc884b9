import {
  compareRows,
  formatBytes,
  formatDuration,
  IRun,
  keyMetrics,
  lineageOf,
  lowerIsBetter,
  OperationGuard,
  plotLines,
  sideBySide,
  sortRuns,
  statusLabels,
  tabId
} from '../model';
import { badgeText, sectionsFor } from '../sections';

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

describe('the run comparison tab', () => {
  it('puts params side by side and marks the rows that differ', () => {
    expect(sideBySide([{ C: '0.1', seed: '1' }, { C: '1.0', seed: '1' }, { seed: '1' }])).toEqual([
      { key: 'C', values: ['0.1', '1.0', '–'], differ: true },
      { key: 'seed', values: ['1', '1', '1'], differ: false }
    ]);
  });

  it('draws each run on the same scales, higher values up, a single value as a point', () => {
    const history = {
      metric: 'auc',
      runs: [
        { run_id: 'a', points: [ { step: 0, value: 0.5, timestamp: 1 }, { step: 2, value: 0.9, timestamp: 2 } ] },
        { run_id: 'b', points: [ { step: 1, value: null, timestamp: 1 }, { step: 1, value: 0.7, timestamp: 1 } ] },
        { run_id: 'c', points: [] }
      ]
    };
    const plot = plotLines(history, 100, 50, 0);
    expect(plot.min).toBe(0.5);
    expect(plot.max).toBe(0.9);
    expect(plot.lines[0].path).toBe('M 0 50 L 100 0');
    expect(plot.lines[1]).toEqual({ run_id: 'b', path: 'M 50 25', last: { x: 50, y: 25, value: 0.7 } });
    expect(plot.lines[2]).toEqual({ run_id: 'c', path: '', last: null });
  });
});

describe('the sidebar as an index', () => {
  const me = { name: 'v', groups: [], validator: false, auditor: false, publish_teams: [] as string[], pipeline: true };

  it.each([
    ['a team member', { ...me, publish_teams: ['sme-credit'] }, ['data', 'experiments', 'models']],
    ['a validator in no team', { ...me, validator: true, auditor: true }, ['approvals', 'audit']],
    ['an admin in no team', { ...me, auditor: true }, ['audit']],
    ['a validator in a team', { ...me, validator: true, auditor: true, publish_teams: ['x'] }, ['data', 'experiments', 'models', 'approvals', 'audit']],
    ['anyone when the hub did not answer', null, ['data', 'experiments', 'models']]
  ])('shows %s only the sections their roles use', (_who, who, sections) => {
    expect(sectionsFor(who)).toEqual(sections);
  });

  it('gives tabs stable ids, one per item', () => {
    expect(tabId('compare', 'r1', 'r2')).toBe('mlopshub-compare-r1-r2');
    expect(tabId('release', 'rel.1/x')).toBe('mlopshub-release-rel_1_x');
    expect(badgeText(0)).toBe('');
    expect(badgeText(3)).toBe('3');
    expect(badgeText(120)).toBe('99+');
  });
});
