package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"chatroom/hub/bot/shop"
)

// TestShopSellsToEveryKindOfClientConcurrently: 50 customers on every kind
// of connection (TCP and WebSocket JSON clients in #shop and by private
// message, people at nc, original-shape clients with "@shop" in the lobby)
// buy at once from a stock of 30 watermelons: exactly 30 are sold, stock
// never goes below zero, each buyer's balance is right, and every answer
// reaches only the customer it is for.
func TestShopSellsToEveryKindOfClientConcurrently(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Shop = true
		c.ShopGoods = []shop.Item{{Name: "西瓜", Price: 2, Stock: 30}, {Name: "瓜子", Price: 4.5, Stock: 100}}
	})
	const customers = 50
	type result struct{ sold, soldOut int }
	results := make(chan result, customers)
	var wg sync.WaitGroup
	for i := range customers {
		name := fmt.Sprintf("c%02d", i)
		wg.Go(func() {
			var replies []string
			switch i % 4 {
			case 0: // TCP JSON, private messages: two sunflower seeds, then a watermelon
				c := dialTCP(t, m, name)
				c.login(name)
				for _, item := range []string{"瓜子", "瓜子", "西瓜"} {
					c.request(`{"type":"private","to":"shop","message":%q}`, item)
					replies = append(replies, awaitShop(c))
				}
				if want := "购买成功,余额 -9 (购物篮:瓜子×2)"; replies[1] != want {
					t.Errorf("%s: %q, want %q", name, replies[1], want)
				}
				replies = replies[2:]
			case 1: // WebSocket JSON, in #shop: greeted with the goods first
				c := dialWS(t, m, name)
				c.login(name)
				c.request(`{"type":"join","room":"shop"}`)
				c.awaitType("joined")
				if greeting := awaitShop(c); !strings.HasPrefix(greeting, "目前商店还有:") {
					t.Errorf("%s: greeted with %q", name, greeting)
				}
				c.request(`{"type":"broadcast","room":"shop","message":"西瓜"}`)
				replies = append(replies, awaitShop(c))
			case 2: // a person at nc
				p := dialPerson(t, m)
				p.type_("login " + name + "\r\n/msg shop 西瓜\r\n")
				line := p.expect("[private] shop: ")
				replies = append(replies, strings.TrimSpace(line[strings.Index(line, "shop: ")+6:]))
			case 3: // the original protocol: it can only talk in the lobby
				c := dialTCP(t, m, name)
				c.loginOriginal(name)
				c.send(`{"type": "broadcast", "message": "@shop 西瓜"}`)
				got := c.await("the shop's answer", func(x msg) bool { return x.str("sender_nickname") == "shop" })
				replies = append(replies, strings.TrimPrefix(got.str("message"), "[private] "))
			}
			var r result
			for _, reply := range replies {
				switch {
				case reply == "购买成功,余额 -2 (购物篮:西瓜×1)" || reply == "购买成功,余额 -11 (购物篮:西瓜×1,瓜子×2)":
					r.sold++
				case reply == "抱歉,西瓜已经卖完了,请选购其他的。":
					r.soldOut++
				default:
					t.Errorf("%s: unexpected answer %q", name, reply)
				}
			}
			results <- r
		})
	}
	wg.Wait()
	close(results)
	var total result
	for r := range results {
		total.sold += r.sold
		total.soldOut += r.soldOut
	}
	if total.sold != 30 || total.soldOut != customers-30 {
		t.Fatalf("%d sold, %d told sold out; want 30 and %d", total.sold, total.soldOut, customers-30)
	}
	// And the menu no longer offers watermelons.
	c := dialTCP(t, m, "late")
	c.login("late")
	c.request(`{"type":"private","to":"shop","message":"?"}`)
	if menu := awaitShop(c); menu != "目前商店还有:瓜子(4.5)。请问您需要什么?" {
		t.Fatalf("menu after the rush: %q", menu)
	}
	c.request(`{"type":"private","to":"shop","message":"红牛"}`)
	if got := awaitShop(c); got != "抱歉,您购买的商品目前没有,请选购其他的。" {
		t.Fatalf("unknown item: %q", got)
	}
	c.request(`{"type":"private","to":"shop","message":"拜拜"}`)
	if got := awaitShop(c); got != "欢迎下次光临" {
		t.Fatalf("goodbye: %q", got)
	}
}

// awaitShop waits for the shop's next private answer to c, checking that
// it is for c.
func awaitShop(c *client) string {
	c.t.Helper()
	got := c.await("the shop's answer", func(x msg) bool { return x.str("type") == "private" && x.str("sender_nickname") == "shop" })
	if got.num("to_id") != c.id {
		c.t.Fatalf("%s got an answer for member %d", c.name, got.num("to_id"))
	}
	return got.str("message")
}

// TestSeedPythonClientBuysAWatermelon: the tutorial's own client shops
// from the lobby.
func TestSeedPythonClientBuysAWatermelon(t *testing.T) {
	m := startServer(t, func(c *Config) { c.Shop = true })
	py := startSeedClient(t, m)
	py.await("[Welcome]")
	py.typeLine("login 顾客")
	py.await("成功登录到聊天室")
	py.typeLine("send @shop 西瓜")
	py.await("[private] 购买成功,余额 -2")
}
