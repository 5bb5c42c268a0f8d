// `vl bench --out` rewrites only its generated region, keeping hand-written sections of the page.
import { describe, expect, it } from 'vitest';
import { spliceGenerated } from '../commands/bench.js';

describe('spliceGenerated', () => {
  it('creates a marked page, then replaces only the marked region', () => {
    const first = spliceGenerated(null, 'run 1');
    expect(first).toMatch(/^<!-- bench:start[^\n]*-->\nrun 1\n<!-- bench:end -->\n$/);
    const edited = `# Title\n\nintro\n\n${first}\n## More\nkept\n`;
    const second = spliceGenerated(edited, 'run 2');
    expect(second).toContain('# Title\n\nintro\n\n');
    expect(second).toContain('run 2');
    expect(second).not.toContain('run 1');
    expect(second.endsWith('\n## More\nkept\n')).toBe(true);
  });

  it('a page without markers is replaced whole', () => {
    expect(spliceGenerated('old text', 'new')).toContain('new');
    expect(spliceGenerated('old text', 'new')).not.toContain('old text');
  });
});
