// Package shop is the snack shop of the tutorial this chat grew out of
// (section 7), as a bot: it sells goods by name to anyone who asks, keeps
// each customer's balance and basket, and has finite stock.
//
// Where it listens:
//   - room #shop: it greets each newcomer with the goods and their prices,
//     and answers what is said there;
//   - private messages to it;
//   - the lobby, for lines addressed to it ("@shop 西瓜"), which is how the
//     tutorial's original client, which can only talk in the lobby, shops.
//
// It always answers privately, so no customer sees another's purchases
// (what a customer says in #shop is seen by the room, as anything said
// there). In the tutorial's words, by default: the goods list "目前商店还有:
// 瓜子(4.5),西瓜(2),矿泉水(2.5)。请问您需要什么?", a sale "购买成功,余额 -2",
// an unknown item "抱歉,您购买的商品目前没有,请选购其他的。", and "欢迎下次光临"
// for "拜拜" or "bye". As in the tutorial, a customer pays on account: the
// balance starts at 0 and goes down by each price. Balances, baskets and
// stock live in memory and start afresh with the server.
package shop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"chatroom/hub"
	"chatroom/hub/bot"
)

// Item is one kind of goods.
type Item struct {
	Name  string  `json:"name"`
	Price float64 `json:"price"`
	Stock int     `json:"stock"`
}

// DefaultGoods are the tutorial's, with 100 of each.
func DefaultGoods() []Item {
	return []Item{{"瓜子", 4.5, 100}, {"西瓜", 2, 100}, {"矿泉水", 2.5, 100}}
}

// LoadGoods reads goods from a JSON file: [{"name":"西瓜","price":2,"stock":10}].
func LoadGoods(path string) ([]Item, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("shop goods: %w", err)
	}
	var goods []Item
	if err := json.Unmarshal(b, &goods); err != nil {
		return nil, fmt.Errorf("shop goods %s: %w", path, err)
	}
	for _, it := range goods {
		if strings.TrimSpace(it.Name) == "" || it.Price < 0 || it.Stock < 0 {
			return nil, fmt.Errorf("shop goods %s: %q: a name, a price and a stock of 0 or more each", path, it.Name)
		}
	}
	return goods, nil
}

// Room is where the shop keeps its counter.
const Room = "shop"

// Nickname is the shop's name: "@shop ..." in the lobby is for it.
const Nickname = "shop"

// Shop is the bot's handler. Its state is touched only by the bot's
// goroutine, one event at a time: that is what keeps stock from going
// below zero however many buy at once.
type Shop struct {
	goods     []Item // in the order they are listed; Stock counts down
	customers map[int64]*customer
}

type customer struct {
	balance float64
	basket  map[string]int
}

// New returns a shop selling goods (copied).
func New(goods []Item) *Shop {
	return &Shop{goods: append([]Item(nil), goods...), customers: map[int64]*customer{}}
}

// Start runs the shop as a bot on h, in the lobby and #shop.
func Start(ctx context.Context, h *hub.Hub, goods []Item, opts bot.Options) (*bot.Bot, error) {
	opts.Nickname, opts.Rooms = Nickname, []string{Room}
	return bot.Start(ctx, h, opts, New(goods))
}

// Handle implements bot.Handler.
func (s *Shop) Handle(ctx context.Context, b *bot.Bot, ev *hub.Event) {
	switch {
	case ev.Kind == hub.KindJoin && ev.Room == Room:
		_ = b.Tell(ctx, ev.Subject.ID, s.menu())
	case ev.Kind == hub.KindPrivate && ev.To.ID == b.Self().ID:
		_ = b.Tell(ctx, ev.From.ID, s.answer(ev.From.ID, ev.Text))
	case ev.Kind == hub.KindMessage && ev.Room == Room:
		_ = b.Tell(ctx, ev.From.ID, s.answer(ev.From.ID, ev.Text))
	case ev.Kind == hub.KindMessage && ev.Room == hub.Lobby:
		if rest, ok := addressed(ev.Text); ok {
			_ = b.Tell(ctx, ev.From.ID, s.answer(ev.From.ID, rest))
		}
	}
}

// addressed reports whether a lobby line is for the shop ("@shop 西瓜",
// "shop: 西瓜") and returns the rest.
func addressed(text string) (string, bool) {
	t := strings.TrimSpace(text)
	for _, prefix := range []string{"@" + Nickname, Nickname + ":", Nickname + "："} {
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) {
			return strings.TrimSpace(t[len(prefix):]), true
		}
	}
	return "", false
}

// menu lists what is in stock, in the tutorial's words.
func (s *Shop) menu() string {
	var items []string
	for _, it := range s.goods {
		if it.Stock > 0 {
			items = append(items, it.Name+"("+price(it.Price)+")")
		}
	}
	if len(items) == 0 {
		return "抱歉,商店的商品都卖完了。"
	}
	return "目前商店还有:" + strings.Join(items, ",") + "。请问您需要什么?"
}

// answer is the shop's reply to what customer id said.
func (s *Shop) answer(id int64, text string) string {
	want := strings.TrimSpace(text)
	switch strings.ToLower(want) {
	case "", "?", "？", "menu", "菜单", "你好", "hi", "hello":
		return s.menu()
	case "拜拜", "bye", "再见":
		delete(s.customers, id)
		return "欢迎下次光临"
	}
	for i := range s.goods {
		it := &s.goods[i]
		if it.Name != want {
			continue
		}
		if it.Stock == 0 {
			return "抱歉," + it.Name + "已经卖完了,请选购其他的。"
		}
		it.Stock--
		c := s.customers[id]
		if c == nil {
			c = &customer{basket: map[string]int{}}
			s.customers[id] = c
		}
		c.balance -= it.Price
		c.basket[it.Name]++
		return "购买成功,余额 " + price(c.balance) + " (购物篮:" + s.basket(c) + ")"
	}
	return "抱歉,您购买的商品目前没有,请选购其他的。"
}

// basket lists a customer's purchases in the goods' order.
func (s *Shop) basket(c *customer) string {
	var parts []string
	for _, it := range s.goods {
		if n := c.basket[it.Name]; n > 0 {
			parts = append(parts, it.Name+"×"+strconv.Itoa(n))
		}
	}
	return strings.Join(parts, ",")
}

// price shows an amount as the tutorial does: 2, 4.5, -6.5.
func price(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

var _ bot.Handler = (*Shop)(nil)
