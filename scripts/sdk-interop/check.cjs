// Drives every order-group operation, V2 order entry and order reads of Kalshi's official
// TypeScript SDK (kalshi-typescript, unchanged) against a running `kalshi-riskd sim`.
//
//   node check.cjs http://127.0.0.1:PORT/trade-api/v2 KEY_ID PRIVATE_KEY.pem
//
// Prints one line per step and exits non-zero at the first step that fails.
'use strict';
const { Configuration, OrderGroupsApi, OrdersApi } = require('kalshi-typescript');

const [, , basePath, apiKey, privateKeyPath] = process.argv;
if (!privateKeyPath) {
  console.error('usage: node check.cjs BASE_PATH KEY_ID PRIVATE_KEY.pem');
  process.exit(2);
}
const config = new Configuration({ apiKey, privateKeyPath, basePath });
const groups = new OrderGroupsApi(config);
const orders = new OrdersApi(config);

function check(cond, what) {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
}

async function step(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    const body = e.response ? ` HTTP ${e.response.status} ${JSON.stringify(e.response.data)}` : '';
    console.log(`FAIL ${name}: ${e.message}${body}`);
    process.exit(1);
  }
}

async function expectStatus(promise, status) {
  try {
    await promise;
  } catch (e) {
    if (e.response && e.response.status === status) return;
    throw e;
  }
  throw new Error(`expected HTTP ${status}`);
}

(async () => {
  let id;
  let orderId;
  await step('createOrderGroup', async () => {
    const r = await groups.createOrderGroup({ contracts_limit: 5, subaccount: 2 });
    check(r.status === 201, `status ${r.status}`);
    id = r.data.order_group_id;
    check(typeof id === 'string' && r.data.subaccount === 2, JSON.stringify(r.data));
    return id;
  });
  await step('getOrderGroups', async () => {
    const r = await groups.getOrderGroups(2);
    const g = r.data.order_groups.find((x) => x.id === id);
    check(g && g.contracts_limit_fp === '5.00' && g.is_auto_cancel_enabled === true, JSON.stringify(r.data));
  });
  await step('getOrderGroup', async () => {
    const r = await groups.getOrderGroup(id, 2);
    check(Array.isArray(r.data.orders) && r.data.contracts_limit_fp === '5.00', JSON.stringify(r.data));
  });
  await step('updateOrderGroupLimit', async () => {
    const r = await groups.updateOrderGroupLimit(id, { contracts_limit_fp: '8.00' }, 2);
    check(r.status === 200, `status ${r.status}`);
    const g = await groups.getOrderGroup(id, 2);
    check(g.data.contracts_limit_fp === '8.00', JSON.stringify(g.data));
  });
  await step('createOrderV2 into the group', async () => {
    const r = await orders.createOrderV2({
      ticker: 'KXSDK-26NOV23',
      side: 'bid',
      count: '3',
      price: '0.5500',
      time_in_force: 'good_till_canceled',
      self_trade_prevention_type: 'taker_at_cross',
      subaccount: 2,
      order_group_id: id,
    });
    check(r.status === 201 && r.data.fill_count === '3.00', JSON.stringify(r.data));
    orderId = r.data.order_id;
  });
  await step('getOrder carries order_group_id', async () => {
    const r = await orders.getOrder(orderId);
    check(r.data.order.order_group_id === id && r.data.order.status === 'executed', JSON.stringify(r.data));
  });
  await step('triggerOrderGroup', async () => {
    const r = await groups.triggerOrderGroup(id, 2, 0, {});
    check(r.status === 200, `status ${r.status}`);
  });
  await step('orders into a triggered group are rejected', async () => {
    await expectStatus(
      orders.createOrderV2({
        ticker: 'KXSDK-26NOV23', side: 'bid', count: '1', price: '0.5500',
        time_in_force: 'good_till_canceled', self_trade_prevention_type: 'maker',
        subaccount: 2, order_group_id: id,
      }),
      400,
    );
  });
  await step('resetOrderGroup', async () => {
    const r = await groups.resetOrderGroup(id, 2, 0, {});
    check(r.status === 200, `status ${r.status}`);
  });
  await step('wrong subaccount is 404', async () => {
    await expectStatus(groups.triggerOrderGroup(id, 0, 0, {}), 404);
  });
  await step('deleteOrderGroup', async () => {
    const r = await groups.deleteOrderGroup(id, 2, 0);
    check(r.status === 200, `status ${r.status}`);
    await expectStatus(groups.getOrderGroup(id), 404);
  });
  console.log('all SDK checks passed');
})();
