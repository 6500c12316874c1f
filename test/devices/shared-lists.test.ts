import test from 'ava';
import { SharedLists } from '../../daemon/devices/shared-lists.ts';

test('equal lists share the first one given; order and content make a list distinct', (t) => {
  const lists = new SharedLists();
  const first = ['aten::add.out', 'aten::mul.out'];
  t.is(lists.share(first), first);
  t.is(lists.share(['aten::add.out', 'aten::mul.out']), first);
  t.not(lists.share(['aten::mul.out', 'aten::add.out']), first);
  t.not(lists.share(['aten::add.out']), first);
  t.is(lists.share([]), lists.share([]));
  t.is(lists.size, 4);
});
