#!/usr/bin/env python3
"""prom_check.py - a strict reader of the Prometheus text format 0.0.4 (the
tests of node/bench/ metrics and of `girder node --metrics`).

Every line is a HELP, a TYPE or a sample; HELP/TYPE once per family and
before its samples; samples of a family contiguous; names and label names
valid; label values with only the three escapes; values Go floats;
histogram buckets ascending in le, cumulative, ending at +Inf equal to
_count, with _sum.  argv[1] is a file or an http:// URL (fetched with
urllib); argv[2..] are names that must be present.  Prints the number of
samples; exits non-zero (an AssertionError) on the first violation.
"""
import re, sys, urllib.request
src = sys.argv[1]
if src.startswith('http://'):
    with urllib.request.urlopen(src, timeout=10) as r:
        assert r.status == 200, r.status
        ct = r.headers['Content-Type']
        assert ct.startswith('text/plain; version=0.0.4'), ct
        text = r.read().decode('utf-8')
else:
    text = open(src, encoding='utf-8').read()
assert text.endswith('\n'), 'no final newline'
NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LNAME = r'[a-zA-Z_][a-zA-Z0-9_]*'
LVAL = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r'^(' + NAME + r')(\{(' + LNAME + '=' + LVAL + r'(?:,' + LNAME + '=' + LVAL + r')*)?\})? (\S+)( -?\d+)?$')
LABEL = re.compile('(' + LNAME + ')=(' + LVAL + ')')
def num(s):
    if s in ('NaN', '+Inf', '-Inf'): return float(s.replace('+', ''))
    assert re.match(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$', s), 'bad value ' + s
    return float(s)
def unesc(v):
    return re.sub(r'\\(.)', lambda m: {'n': '\n', '\\': '\\', '"': '"'}[m.group(1)], v[1:-1])
types, helps, done, cur, samples = {}, {}, set(), None, []
for line in text.split('\n')[:-1]:
    if line.startswith('# HELP '):
        name = line.split(' ', 3)[2]
        assert re.fullmatch(NAME, name) and name not in helps, line
        assert re.fullmatch(r'(?:[^\\]|\\[\\n])*', line.split(' ', 3)[3]), line
        helps[name] = 1
    elif line.startswith('# TYPE '):
        _, _, name, t = line.split(' ')
        assert name not in types and t in ('counter', 'gauge', 'histogram', 'summary', 'untyped'), line
        assert name not in done, 'TYPE after samples: ' + line
        types[name] = t
        if cur is not None: done.add(cur)
        cur = name
    elif line.startswith('#'):
        continue
    else:
        m = SAMPLE.match(line)
        assert m, 'bad sample line: ' + repr(line)
        name, labels, value = m.group(1), m.group(3) or '', m.group(4)
        fam = name
        for sfx in ('_bucket', '_sum', '_count'):
            if name.endswith(sfx) and types.get(name[:-len(sfx)]) == 'histogram': fam = name[:-len(sfx)]
        assert fam == cur, 'sample outside its family: ' + line
        ls = [(k, unesc(v)) for k, v in LABEL.findall(labels)]
        assert len(set(k for k, _ in ls)) == len(ls), 'duplicate label ' + line
        samples.append((fam, name, ls, num(value)))
for fam, t in types.items():
    if t != 'histogram': continue
    series = {}
    for f, name, ls, v in samples:
        if f != fam: continue
        key = tuple(x for x in ls if x[0] != 'le')
        s = series.setdefault(key, {'b': [], 'sum': None, 'count': None})
        if name.endswith('_bucket'): s['b'].append((num(dict(ls)['le']), v))
        elif name.endswith('_sum'): s['sum'] = v
        else: s['count'] = v
    for key, s in series.items():
        les = [b[0] for b in s['b']]; cs = [b[1] for b in s['b']]
        assert les == sorted(les) and les[-1] == float('inf'), (fam, les)
        assert cs == sorted(cs), (fam, cs)
        assert s['sum'] is not None and s['count'] == cs[-1], (fam, s)
for want in sys.argv[2:]:
    assert any(n == want for _, n, _, _ in samples) or want in types, 'missing ' + want
print('%d samples in %d families: ok' % (len(samples), len(types)))
