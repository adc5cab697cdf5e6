// The READDIRPLUS advisor (daemon/fuse/plus-advisor.ts): when file entries go without
// attributes. Pure logic, driven by the sequences a name-only walk and a stat-ing walk produce.
import t from 'tap';
import { PlusAdvisor } from '../../daemon/fuse/plus-advisor';

/** Lists dirs first..first+n-1 (5 files each); `stat` looks each file up after its listing. */
function walk(a: PlusAdvisor, first: number, n: number, stat: boolean): boolean[] {
  const bare: boolean[] = [];
  for (let d = first; d < first + n; d++) {
    bare.push(a.startListing(d, 5));
    if (stat) for (let f = 0; f < 5; f++) a.lookedUp(d);
  }
  return bare;
}

t.test('a name-only walk goes bare after one probe and stays bare', async (t) => {
  const changes: boolean[] = [];
  const a = new PlusAdvisor((b) => changes.push(b));
  const bare = walk(a, 1, 100, false);
  t.same(bare.slice(0, 15), Array(15).fill(false), 'attributes until the first probe');
  t.equal(bare[15], true, 'the 16th listing with files is the probe');
  t.same(bare.slice(16, 20), Array(4).fill(false), 'attributes while the verdict is open');
  t.same(bare.slice(20), Array(80).fill(true), 'no lookups followed: the rest go bare');
  t.same(changes, [true], 'one switch, logged');
});

t.test('a stat-ing walk keeps attributes, probing less and less often', async (t) => {
  const a = new PlusAdvisor();
  const bare = walk(a, 1, 2000, true);
  const probes = bare.map((b, i) => (b ? i + 1 : 0)).filter(Boolean);
  t.same(probes, [16, 48, 112, 240, 496, 1008], 'probe intervals double up to 1024');
  t.notOk(a.filesBare, 'attributes stay on');
});

t.test('from bare, the first lookup in a recent bare listing brings attributes back', async (t) => {
  const changes: boolean[] = [];
  const a = new PlusAdvisor((b) => changes.push(b));
  walk(a, 1, 30, false);
  t.ok(a.filesBare, 'bare after a name-only walk');
  a.lookedUp(999);
  t.ok(a.filesBare, 'a lookup elsewhere changes nothing');
  t.equal(a.startListing(30, 5), true, 'the next listing is still bare');
  a.lookedUp(30);
  t.notOk(a.filesBare, 'a lookup of its names: attributes again');
  t.equal(a.startListing(31, 5), false, 'the next listing carries them');
  t.same(changes, [true, false]);
});

t.test('a walker that descends before stat-ing the files of a probe or a bare listing still counts', async (t) => {
  const a = new PlusAdvisor();
  walk(a, 1, 15, false);
  t.equal(a.startListing(50, 5), true, 'the probe');
  t.same(walk(a, 51, 3, false), [false, false, false], 'its subdirectories');
  a.lookedUp(50);
  t.same(walk(a, 60, 40, false).slice(0, 4), [false, false, false, false], 'its files looked up late: attributes stay');
  walk(a, 100, 40, false);
  t.equal(a.startListing(100, 5), true);
  t.equal(a.startListing(101, 5), true, 'a subdirectory listed first');
  a.lookedUp(100);
  t.notOk(a.filesBare, 'the parent\'s files looked up late still bring attributes back');
});

t.test('listings without files neither probe nor decide', async (t) => {
  const a = new PlusAdvisor();
  for (let d = 1; d <= 100; d++) t.equal(a.startListing(d, 0), false);
  t.notOk(a.filesBare);
  t.equal(walk(a, 200, 16, false)[15], true, 'the first listing with files that is due probes');

});
