#!/usr/bin/env python3
"""Build experiments/data/commerce.db: a small, fictional Brazilian online shop.

Deterministic (seeded RNG, fixed insertion order). Python 3.11 standard library only.
Written for this project (Apache-2.0).

    python3 experiments/data/build_commerce_db.py            # writes commerce.db beside this file
    python3 experiments/data/build_commerce_db.py --out X.db

Tables: customers, products, orders, order_items, reviews; view orders_enriched
(one row per order with its customer, item count and review, if any).
Code-like values are English (status 'delivered', payment 'pix', sentiment 'negative');
names, cities and categories are Portuguese.
"""

import argparse
import datetime as dt
import os
import random
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from catalog import CITIES, CITY_WEIGHTS, FIRST_NAMES, PRODUCTS, SURNAMES  # noqa: E402

SEED = 20250802
N_CUSTOMERS = 60
N_ORDERS = 200
FIRST_ORDER_DAY = dt.date(2025, 1, 2)
LAST_ORDER_DAY = dt.date(2025, 6, 30)

SCHEMA = """
CREATE TABLE customers (
    customer_id  INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    email        TEXT NOT NULL UNIQUE,
    city         TEXT NOT NULL,
    state        TEXT NOT NULL,
    signup_date  TEXT NOT NULL            -- ISO date
);
CREATE TABLE products (
    product_id   INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    category     TEXT NOT NULL,
    price        REAL NOT NULL            -- BRL
);
CREATE TABLE orders (
    order_id       INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers(customer_id),
    order_date     TEXT NOT NULL,         -- ISO date
    status         TEXT NOT NULL CHECK (status IN ('delivered','shipped','processing','cancelled')),
    payment_method TEXT NOT NULL CHECK (payment_method IN ('pix','credit_card','boleto')),
    shipping_cost  REAL NOT NULL,         -- BRL
    total_amount   REAL NOT NULL,         -- BRL, items + shipping
    delivery_days  INTEGER                -- NULL unless delivered
);
CREATE TABLE order_items (
    order_item_id INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL REFERENCES orders(order_id),
    product_id    INTEGER NOT NULL REFERENCES products(product_id),
    quantity      INTEGER NOT NULL,
    unit_price    REAL NOT NULL
);
CREATE TABLE reviews (
    review_id    INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL UNIQUE REFERENCES orders(order_id),
    customer_id  INTEGER NOT NULL REFERENCES customers(customer_id),
    product_id   INTEGER NOT NULL REFERENCES products(product_id),
    rating       INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    sentiment    TEXT NOT NULL CHECK (sentiment IN ('positive','neutral','negative')),
    comment      TEXT NOT NULL,
    review_date  TEXT NOT NULL
);
CREATE VIEW orders_enriched AS
SELECT o.order_id, o.order_date, o.status, o.payment_method, o.shipping_cost,
       o.total_amount, o.delivery_days,
       c.customer_id, c.name AS customer_name, c.city, c.state,
       (SELECT SUM(i.quantity) FROM order_items i WHERE i.order_id = o.order_id) AS n_items,
       r.product_id AS reviewed_product_id, p.name AS reviewed_product, p.category AS reviewed_category,
       r.rating, r.sentiment, r.comment AS review_comment
FROM orders o
JOIN customers c ON c.customer_id = o.customer_id
LEFT JOIN reviews r ON r.order_id = o.order_id
LEFT JOIN products p ON p.product_id = r.product_id;
"""

# Review comments by sentiment; {p} is the reviewed product's name.
COMMENTS = {
    "positive": [
        "Chegou antes do prazo e bem embalado. {p} excelente, recomendo!",
        "{p} exatamente como na descrição. Compraria de novo.",
        "Ótimo custo-benefício. Entrega rápida; {p} funciona perfeitamente.",
        "Amei! {p} superou minhas expectativas.",
        "Tudo certo com o pedido: {p}, ótima qualidade.",
        "Entrega no prazo e atendimento atencioso. Nota 10.",
        "Produto original, bem embalado e chegou rapidinho.",
        "Segunda vez que compro {p} aqui, sempre sem problemas.",
    ],
    "neutral": [
        "{p} é ok, mas esperava um acabamento melhor pelo preço.",
        "Entrega dentro do prazo, produto mediano.",
        "Cumpre o que promete, nada de especial.",
        "Demorou um pouco para chegar, mas o produto é bom.",
        "Veio sem manual em português, mas funciona.",
        "A cor é um pouco diferente da foto. De resto, tudo certo.",
    ],
    "negative": [
        "Atrasou mais de uma semana e ninguém me deu previsão.",
        "{p} veio com defeito e a troca está demorando.",
        "Produto diferente do anunciado. Quero devolver.",
        "Entrega muito atrasada, o rastreio ficou parado por dias.",
        "Caixa amassada e o produto chegou arranhado.",
        "Atendimento não resolve nada, já abri três chamados.",
        "Paguei no Pix e o pedido ficou dias sem confirmação.",
        "{p} parou de funcionar em duas semanas.",
    ],
}


def build(path: str) -> None:
    rng = random.Random(SEED)
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)

    # Customers: unique full names, weighted cities, sign-ups in 2023-2025.
    names, seen = [], set()
    while len(names) < N_CUSTOMERS:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    customers = []
    for cid, name in enumerate(names, start=1):
        city, state = rng.choices(CITIES, weights=CITY_WEIGHTS)[0]
        email = ascii_email(name, cid)
        signup = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(0, 850))
        customers.append((cid, name, email, city, state, signup.isoformat()))
    con.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", customers)

    products = [(pid, n, c, p) for pid, (n, c, p) in enumerate(PRODUCTS, start=1)]
    con.executemany("INSERT INTO products VALUES (?,?,?,?)", products)

    # A few customers never order; active ones order with skewed frequency.
    active = [c[0] for c in customers if c[0] % 12 != 0]
    activity = {cid: rng.choice([1, 1, 2, 3, 4, 6]) for cid in active}
    cheap_weight = [3 if p < 100 else 2 if p < 400 else 1 for (_, _, p) in PRODUCTS]
    span = (LAST_ORDER_DAY - FIRST_ORDER_DAY).days
    order_dates = sorted(
        FIRST_ORDER_DAY + dt.timedelta(days=rng.randrange(0, span + 1)) for _ in range(N_ORDERS)
    )

    orders, items, reviews = [], [], []
    item_id = 0
    for oid, day in enumerate(order_dates, start=1):
        cid = rng.choices(active, weights=[activity[a] for a in active])[0]
        state = customers[cid - 1][4]
        days_left = (LAST_ORDER_DAY - day).days
        if days_left < 5:
            status = rng.choice(["processing", "shipped"])
        elif days_left < 12:
            status = rng.choice(["shipped", "delivered", "delivered"])
        else:
            status = "cancelled" if rng.random() < 0.07 else "delivered"
        payment = rng.choices(["pix", "credit_card", "boleto"], weights=[5, 6, 2])[0]
        n_lines = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        pids = rng.sample(range(1, len(PRODUCTS) + 1), n_lines)
        subtotal = 0.0
        lines = []
        for pid in pids:
            weight = cheap_weight[pid - 1]
            qty = rng.choices([1, 2, 3], weights=[8, 2 * weight, weight])[0]
            price = PRODUCTS[pid - 1][2]
            item_id += 1
            lines.append((item_id, oid, pid, qty, price))
            subtotal += qty * price
        far = state in ("AM", "PA", "CE", "BA", "PE")
        shipping = 0.0 if subtotal >= 299 else (29.90 if far else 19.90)
        total = round(subtotal + shipping, 2)
        delivery = None
        if status == "delivered":
            base = rng.randint(5, 12) if far else rng.randint(2, 7)
            delivery = base + (rng.randint(4, 9) if rng.random() < 0.12 else 0)
        orders.append((oid, cid, day.isoformat(), status, payment, shipping, total, delivery))
        items.extend(lines)

        if status == "delivered" and rng.random() < 0.6:
            late = delivery is not None and delivery > 9
            if late:
                rating = rng.choices([1, 2, 3, 4], weights=[4, 3, 2, 1])[0]
            else:
                rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 5, 7])[0]
            sentiment = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
            pid = lines[0][2]
            comment = rng.choice(COMMENTS[sentiment]).format(p=PRODUCTS[pid - 1][0])
            rday = day + dt.timedelta(days=(delivery or 0) + rng.randint(0, 6))
            reviews.append(
                (len(reviews) + 1, oid, cid, pid, rating, sentiment, comment, rday.isoformat())
            )

    con.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", orders)
    con.executemany("INSERT INTO order_items VALUES (?,?,?,?,?)", items)
    con.executemany("INSERT INTO reviews VALUES (?,?,?,?,?,?,?,?)", reviews)
    con.commit()
    con.execute("VACUUM")
    con.close()
    print(
        f"wrote {path}: {len(customers)} customers, {len(products)} products, "
        f"{len(orders)} orders, {len(items)} order_items, {len(reviews)} reviews"
    )


def ascii_email(name: str, cid: int) -> str:
    """'João Conceição', 7 -> 'joao.conceicao7@exemplo.com.br' (fictional domain)."""
    table = str.maketrans("áàâãéêíóôõúçÁÉÍÓÚÇ", "aaaaeeioooucAEIOUC")
    local = name.translate(table).lower().replace(" ", ".")
    return f"{local}{cid}@exemplo.com.br"


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "commerce.db"))
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
