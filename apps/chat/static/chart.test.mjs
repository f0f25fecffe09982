// node --test apps/chat/static/chart.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chartModel, niceStep } from './chart.js';

test('sales by year: text years label, numeric sales value', () => {
  const model = chartModel({ columns: ['year', 'sales'], rows: [['2022', 1200.5], ['2023', 1800]] });
  assert.deepEqual(model, {
    labelColumn: 'year',
    valueColumn: 'sales',
    bars: [{ label: '2022', value: 1200.5 }, { label: '2023', value: 1800 }],
  });
});

test('a text column is preferred as label', () => {
  const model = chartModel({ columns: ['id', 'name', 'rows'], rows: [[1, 'orders', 10], [2, 'customers', 4]] });
  assert.equal(model.labelColumn, 'name');
  assert.equal(model.valueColumn, 'rows');
});

test('not chartable', () => {
  assert.equal(chartModel({ columns: ['name', 'title'], rows: [['a', 'b']] }), null);
  assert.equal(chartModel({ columns: ['x'], rows: [[1]] }), null);
  assert.equal(chartModel({ columns: ['a', 'b'], rows: [] }), null);
  assert.equal(chartModel({ tables: [] }), null);
  assert.equal(chartModel({ columns: ['a', 'b'], rows: [['x', null]] }), null);
});

test('nice steps', () => {
  assert.equal(niceStep(1000), 200);
  assert.equal(niceStep(7), 2);
  assert.equal(niceStep(0), 1);
});
