#!/usr/bin/env python3
"""Write the PT-BR pairs for the four V4 tasks: pairs/train.jsonl, pairs/eval.jsonl and
pairs/completions_sample.jsonl.

Deterministic; Python 3.11 standard library only. Written for this project (Apache-2.0).
Needs commerce.db (run build_commerce_db.py first): the sql_qa expected answers are computed
by running each reference query against it.

    python3 experiments/data/build_commerce_db.py && python3 experiments/data/make_pairs.py

Row shape (every task): {"id", "task", "prompt": [{"role", "content"}, ...], "reference", ...}
  prompt    the chat messages to generate from (a system and a user message), TRL's
            conversational "prompt" shape
  reference the reference assistant answer as text (for extraction, a compact JSON string)
Task-specific fields: see README.md.
"""

import json
import os
import random
import re
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from catalog import CATEGORIES, CITIES, FIRST_NAMES, MONTHS_PT, PRODUCTS, brl, pt_number  # noqa: E402
from reviews_pt import REVIEWS  # noqa: E402

SEED = 4
SYSTEM = (
    "Você é um assistente de dados de uma loja online brasileira. "
    "Responda sempre em português do Brasil."
)
N_EVAL = 10  # per task; the rest is train
PUSH_MAX_CHARS = 120


def messages(user: str) -> list:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- extraction

EXTRACTION_TEMPLATES = [
    # 0: plain instruction, no decimal example
    (
        "Extraia as informações da avaliação de cliente abaixo. Responda apenas com um objeto JSON "
        'com as chaves "sentiment" (positivo, neutro ou negativo), "sentiment_score" (número de 0 a 5), '
        '"complaint_category" (entrega, produto, atendimento, pagamento, outro ou nenhuma), '
        '"product" (nome do produto) e "requires_response" (true ou false).\n\n'
        'Avaliação: "{review}"',
        False,
    ),
    # 1: PT-BR decimal example in the instruction (invites "sentiment_score": 3,5)
    (
        "Analise a avaliação abaixo e devolva um JSON com: o sentimento em \"sentiment\" "
        "(positivo/neutro/negativo); a nota de 0 a 5, com uma casa decimal (ex.: 3,5), em "
        "\"sentiment_score\"; a categoria da reclamação em \"complaint_category\" (entrega, produto, "
        "atendimento, pagamento ou outro; use nenhuma se não houver reclamação); o produto citado em "
        "\"product\"; e em \"requires_response\" se a loja precisa responder ao cliente.\n\n"
        "Avaliação do cliente: {review}",
        True,
    ),
    # 2: fill-in skeleton, ranges written with decimal commas
    (
        "Avaliação recebida no site:\n\"{review}\"\n\n"
        "Preencha o JSON {{\"sentiment\": ..., \"sentiment_score\": ..., \"complaint_category\": ..., "
        "\"product\": ..., \"requires_response\": ...}} seguindo as regras: sentiment é positivo, neutro "
        "ou negativo; sentiment_score vai de 0,0 a 5,0; complaint_category é entrega, produto, "
        "atendimento, pagamento, outro ou nenhuma; requires_response é booleano. "
        "Responda somente com o JSON.",
        True,
    ),
]


def extraction_rows(rng: random.Random) -> list:
    rows = []
    order = list(range(len(REVIEWS)))
    rng.shuffle(order)
    for k, idx in enumerate(order):
        text, product, sentiment, score, category, needs = REVIEWS[idx]
        template, hint = EXTRACTION_TEMPLATES[k % len(EXTRACTION_TEMPLATES)]
        expected = {
            "sentiment": sentiment,
            "sentiment_score": score,
            "complaint_category": category,
            "product": product,
            "requires_response": needs,
        }
        rows.append(
            {
                "task": "extraction",
                "prompt": messages(template.format(review=text)),
                "reference": json.dumps(expected, ensure_ascii=False),
                "expected": expected,
                "pt_decimal_hint": hint or bool(re.search(r"\d,\d", text)),
            }
        )
    return rows


# ----------------------------------------------------------------------------- sql_qa

SCHEMA_TEXT = """Banco SQLite da loja (commerce.db):
- customers(customer_id, name, email, city, state, signup_date)
- products(product_id, name, category, price)
- orders(order_id, customer_id, order_date, status, payment_method, shipping_cost, total_amount, delivery_days)
  status: 'delivered', 'shipped', 'processing', 'cancelled'; payment_method: 'pix', 'credit_card', 'boleto'
- order_items(order_item_id, order_id, product_id, quantity, unit_price)
- reviews(review_id, order_id, customer_id, product_id, rating, sentiment, comment, review_date)
  rating de 1 a 5; sentiment: 'positive', 'neutral', 'negative'
- view orders_enriched(order_id, order_date, status, payment_method, shipping_cost, total_amount,
  delivery_days, customer_id, customer_name, city, state, n_items, reviewed_product_id,
  reviewed_product, reviewed_category, rating, sentiment, review_comment)
Datas no formato AAAA-MM-DD; valores em reais."""

SQL_INSTRUCTION = (
    "{schema}\n\nPergunta: {question}\n\n"
    "Escreva uma única consulta SQL (SQLite) que responda à pergunta. "
    "Responda apenas com a consulta, sem explicações."
)

# (question, reference SQL). Each was checked to have a unique, unambiguous answer.
SQL_QUESTIONS = [
    ("Quantos clientes estão cadastrados na loja?", "SELECT COUNT(*) FROM customers;"),
    ("Quantos clientes moram em Recife?", "SELECT COUNT(*) FROM customers WHERE city = 'Recife';"),
    ("Quantos clientes moram em Curitiba?", "SELECT COUNT(*) FROM customers WHERE city = 'Curitiba';"),
    ("Quantos clientes moram em Porto Alegre?",
     "SELECT COUNT(*) FROM customers WHERE city = 'Porto Alegre';"),
    ("Quantos clientes são do estado de São Paulo (SP)?",
     "SELECT COUNT(*) FROM customers WHERE state = 'SP';"),
    ("Quantos produtos a loja vende na categoria Moda?",
     "SELECT COUNT(*) FROM products WHERE category = 'Moda';"),
    ("Qual é o produto mais caro do catálogo?",
     "SELECT name FROM products ORDER BY price DESC LIMIT 1;"),
    ("Qual é o produto mais barato da categoria Eletrônicos?",
     "SELECT name FROM products WHERE category = 'Eletrônicos' ORDER BY price ASC LIMIT 1;"),
    ("Qual é o preço médio dos produtos da categoria Eletrodomésticos? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(price), 2) FROM products WHERE category = 'Eletrodomésticos';"),
    ("Qual é o preço médio dos produtos da categoria Casa e Cozinha? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(price), 2) FROM products WHERE category = 'Casa e Cozinha';"),
    ("Quantos pedidos foram cancelados?",
     "SELECT COUNT(*) FROM orders WHERE status = 'cancelled';"),
    ("Qual foi a receita total dos pedidos entregues? Arredonde para duas casas decimais.",
     "SELECT ROUND(SUM(total_amount), 2) FROM orders WHERE status = 'delivered';"),
    ("Quantos pedidos foram feitos em março de 2025?",
     "SELECT COUNT(*) FROM orders WHERE order_date BETWEEN '2025-03-01' AND '2025-03-31';"),
    ("Quantos pedidos foram feitos em maio de 2025?",
     "SELECT COUNT(*) FROM orders WHERE order_date BETWEEN '2025-05-01' AND '2025-05-31';"),
    ("Quantos pedidos foram feitos em fevereiro de 2025?",
     "SELECT COUNT(*) FROM orders WHERE order_date BETWEEN '2025-02-01' AND '2025-02-28';"),
    ("Qual forma de pagamento foi usada no maior número de pedidos?",
     "SELECT payment_method FROM orders GROUP BY payment_method ORDER BY COUNT(*) DESC LIMIT 1;"),
    ("Quantos pedidos foram pagos com boleto?",
     "SELECT COUNT(*) FROM orders WHERE payment_method = 'boleto';"),
    ("Qual é a nota média das avaliações? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(rating), 2) FROM reviews;"),
    ("Quantas avaliações negativas a loja recebeu?",
     "SELECT COUNT(*) FROM reviews WHERE sentiment = 'negative';"),
    ("Quantas avaliações de 5 estrelas a loja recebeu?",
     "SELECT COUNT(*) FROM reviews WHERE rating = 5;"),
    ("Qual foi o produto mais vendido em unidades, sem contar pedidos cancelados?",
     "SELECT p.name FROM order_items i JOIN products p ON p.product_id = i.product_id "
     "JOIN orders o ON o.order_id = i.order_id WHERE o.status <> 'cancelled' "
     "GROUP BY p.product_id ORDER BY SUM(i.quantity) DESC LIMIT 1;"),
    ("Qual é o ticket médio (valor total médio) dos pedidos entregues? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(total_amount), 2) FROM orders WHERE status = 'delivered';"),
    ("Quantos clientes cadastrados nunca fizeram um pedido?",
     "SELECT COUNT(*) FROM customers WHERE customer_id NOT IN (SELECT customer_id FROM orders);"),
    ("Qual cliente mais gastou na loja, sem contar pedidos cancelados?",
     "SELECT c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE o.status <> 'cancelled' GROUP BY c.customer_id ORDER BY SUM(o.total_amount) DESC LIMIT 1;"),
    ("Qual é o prazo médio de entrega, em dias, dos pedidos entregues para clientes da Bahia (BA)? "
     "Arredonde para uma casa decimal.",
     "SELECT ROUND(AVG(o.delivery_days), 1) FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE o.status = 'delivered' AND c.state = 'BA';"),
    ("Qual é o prazo médio de entrega, em dias, dos pedidos entregues para clientes de São Paulo (SP)? "
     "Arredonde para uma casa decimal.",
     "SELECT ROUND(AVG(o.delivery_days), 1) FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE o.status = 'delivered' AND c.state = 'SP';"),
    ("Qual é o prazo médio de entrega, em dias, dos pedidos entregues para clientes de Pernambuco (PE)? "
     "Arredonde para uma casa decimal.",
     "SELECT ROUND(AVG(o.delivery_days), 1) FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE o.status = 'delivered' AND c.state = 'PE';"),
    ("Quantos pedidos com avaliação negativa levaram mais de 9 dias para serem entregues?",
     "SELECT COUNT(*) FROM orders_enriched WHERE sentiment = 'negative' AND delivery_days > 9;"),
    ("Qual é a receita de cada categoria de produto (soma de quantidade vezes preço unitário), sem contar "
     "pedidos cancelados? Liste categoria e receita arredondada para duas casas, da maior para a menor.",
     "SELECT p.category, ROUND(SUM(i.quantity * i.unit_price), 2) AS receita FROM order_items i "
     "JOIN products p ON p.product_id = i.product_id JOIN orders o ON o.order_id = i.order_id "
     "WHERE o.status <> 'cancelled' GROUP BY p.category ORDER BY receita DESC;"),
    ("Quantas unidades de produtos da categoria Beleza foram vendidas, sem contar pedidos cancelados?",
     "SELECT SUM(i.quantity) FROM order_items i JOIN products p ON p.product_id = i.product_id "
     "JOIN orders o ON o.order_id = i.order_id WHERE p.category = 'Beleza' AND o.status <> 'cancelled';"),
    ("Quantas unidades de produtos da categoria Eletrônicos foram vendidas, sem contar pedidos cancelados?",
     "SELECT SUM(i.quantity) FROM order_items i JOIN products p ON p.product_id = i.product_id "
     "JOIN orders o ON o.order_id = i.order_id WHERE p.category = 'Eletrônicos' AND o.status <> 'cancelled';"),
    ("Qual categoria de produto tem a maior nota média nas avaliações?",
     "SELECT p.category FROM reviews r JOIN products p ON p.product_id = r.product_id "
     "GROUP BY p.category ORDER BY AVG(r.rating) DESC LIMIT 1;"),
    ("Qual categoria de produto tem a menor nota média nas avaliações?",
     "SELECT p.category FROM reviews r JOIN products p ON p.product_id = r.product_id "
     "GROUP BY p.category ORDER BY AVG(r.rating) ASC LIMIT 1;"),
    ("Em qual mês de 2025 houve mais pedidos? Responda com o número do mês com dois dígitos.",
     "SELECT strftime('%m', order_date) AS mes FROM orders GROUP BY mes ORDER BY COUNT(*) DESC LIMIT 1;"),
    ("Liste, em ordem alfabética, os nomes dos clientes que moram em Curitiba.",
     "SELECT name FROM customers WHERE city = 'Curitiba' ORDER BY name;"),
    ("Qual é a porcentagem de pedidos cancelados? Arredonde para uma casa decimal.",
     "SELECT ROUND(100.0 * SUM(status = 'cancelled') / COUNT(*), 1) FROM orders;"),
    ("Qual cidade teve mais pedidos com avaliação negativa?",
     "SELECT city FROM orders_enriched WHERE sentiment = 'negative' GROUP BY city "
     "ORDER BY COUNT(*) DESC LIMIT 1;"),
    ("Qual é o valor total do pedido número 42?",
     "SELECT total_amount FROM orders WHERE order_id = 42;"),
    ("Quantos pedidos fez a cliente Beatriz Lopes?",
     "SELECT COUNT(*) FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE c.name = 'Beatriz Lopes';"),
    ("Qual estado gerou a maior receita, sem contar pedidos cancelados? Responda com a sigla.",
     "SELECT c.state FROM orders o JOIN customers c ON c.customer_id = o.customer_id "
     "WHERE o.status <> 'cancelled' GROUP BY c.state ORDER BY SUM(o.total_amount) DESC LIMIT 1;"),
    ("Quantos produtos do catálogo custam mais de R$ 200?",
     "SELECT COUNT(*) FROM products WHERE price > 200;"),
    ("Em média, quantas unidades tem cada pedido? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(n_items), 2) FROM orders_enriched;"),
    ("Quantos clientes se cadastraram em 2024?",
     "SELECT COUNT(*) FROM customers WHERE signup_date BETWEEN '2024-01-01' AND '2024-12-31';"),
    ("Quantos pedidos foram entregues em até 3 dias?",
     "SELECT COUNT(*) FROM orders WHERE status = 'delivered' AND delivery_days <= 3;"),
    ("Qual é o valor médio do frete cobrado por pedido? Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(shipping_cost), 2) FROM orders;"),
    ("Quantos pedidos ainda estão a caminho ou em processamento?",
     "SELECT COUNT(*) FROM orders WHERE status IN ('shipped', 'processing');"),
    ("Qual é a nota média das avaliações de pedidos que levaram mais de 9 dias para chegar? "
     "Arredonde para duas casas decimais.",
     "SELECT ROUND(AVG(rating), 2) FROM orders_enriched WHERE delivery_days > 9 AND rating IS NOT NULL;"),
    ("Qual cliente fez o pedido número 1?",
     "SELECT c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id WHERE o.order_id = 1;"),
    ("Quantos pedidos pagos via Pix tiveram valor total acima de R$ 500?",
     "SELECT COUNT(*) FROM orders WHERE payment_method = 'pix' AND total_amount > 500;"),
    ("Quantos clientes diferentes avaliaram produtos da categoria Moda?",
     "SELECT COUNT(DISTINCT r.customer_id) FROM reviews r JOIN products p ON p.product_id = r.product_id "
     "WHERE p.category = 'Moda';"),
]


def render_cell(value) -> str:
    return "NULL" if value is None else str(value)


def render_answer(rows: list) -> str:
    """One value -> that value; several rows/columns -> one line per row, cells joined by ' | '."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return render_cell(rows[0][0])
    return "\n".join(" | ".join(render_cell(v) for v in row) for row in rows)


def sql_rows(rng: random.Random, db_path: str) -> list:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = []
    questions = list(SQL_QUESTIONS)
    rng.shuffle(questions)
    # The eval split (the first N_EVAL) must exercise the orders_enriched view too.
    if not any("orders_enriched" in sql for _, sql in questions[:N_EVAL]):
        j = next(k for k, (_, sql) in enumerate(questions) if "orders_enriched" in sql)
        questions[N_EVAL - 1], questions[j] = questions[j], questions[N_EVAL - 1]
    for question, sql in questions:
        result = [list(r) for r in con.execute(sql).fetchall()]
        if not result or all(v is None for r in result for v in r):
            raise SystemExit(f"sql_qa query returned nothing: {sql}")
        rows.append(
            {
                "task": "sql_qa",
                "prompt": messages(SQL_INSTRUCTION.format(schema=SCHEMA_TEXT, question=question)),
                "reference": sql,
                "question": question,
                "reference_sql": sql,
                "expected_rows": result,
                "expected_answer": render_answer(result),
            }
        )
    con.close()
    return rows


# ----------------------------------------------------------------------------- insights

SEGMENTS = [("categoria", c) for c in CATEGORIES] + [
    ("região", r) for r in ["Sudeste", "Sul", "Nordeste", "Norte", "Centro-Oeste"]
]
# Complaint topic, as in "reclamações de <topic>".
COMPLAINTS = {
    "entrega": "atraso e avaria na entrega",
    "produto": "defeito e divergência de produto",
    "atendimento": "demora no atendimento",
    "pagamento": "falha na confirmação de pagamento",
}
RECOMMENDATIONS = {
    "entrega": [
        "Recomendação: revisar o SLA com as transportadoras da região e mostrar prazos realistas na página do produto.",
        "Recomendação: priorizar a expedição dos pedidos dessa área e avisar o cliente proativamente quando houver atraso.",
    ],
    "produto": [
        "Recomendação: acionar os fornecedores dos itens com mais devoluções e revisar fotos e descrições dos anúncios.",
        "Recomendação: reforçar a inspeção de qualidade no recebimento e suspender os anúncios com mais reclamações.",
    ],
    "atendimento": [
        "Recomendação: reforçar o SAC nos horários de pico e criar respostas prontas para as dúvidas mais frequentes.",
        "Recomendação: definir um prazo máximo de 24 horas para a primeira resposta e acompanhá-lo diariamente.",
    ],
    "pagamento": [
        "Recomendação: investigar com o intermediador as falhas de Pix e cartão e confirmar o pagamento por push.",
        "Recomendação: revisar as regras antifraude que recusam cartões válidos e oferecer o Pix como alternativa no checkout.",
    ],
}
GROWTH_RECOMMENDATION = (
    "Recomendação: aproveitar o bom momento e ampliar o investimento em mídia do segmento, "
    "mantendo o acompanhamento semanal da satisfação."
)


def pct_change(new: float, old: float) -> float:
    return round(100.0 * (new - old) / old, 1)


def insight_rows(rng: random.Random) -> list:
    combos = [(s, m) for s in SEGMENTS for m in range(1, 7)]
    rng.shuffle(combos)
    rows = []
    for (kind, seg), month in combos[:50]:
        prev_orders = rng.randint(60, 420)
        orders = max(30, int(prev_orders * rng.uniform(0.75, 1.3)))
        ticket_prev = rng.uniform(60, 450)
        revenue_prev = round(prev_orders * ticket_prev, 2)
        revenue = round(orders * ticket_prev * rng.uniform(0.85, 1.15), 2)
        neg = round(rng.uniform(4, 28), 1)
        complaint = rng.choice(list(COMPLAINTS))
        days = round(rng.uniform(2.5, 11.5), 1)
        period = f"{MONTHS_PT[month]} de 2025"
        prev_period = f"{MONTHS_PT[month - 1]} de 2025" if month > 1 else "dezembro de 2024"
        figures = {
            "period": period,
            "previous_period": prev_period,
            "segment": f"{kind} {seg}",
            "orders": orders,
            "orders_prev": prev_orders,
            "revenue": revenue,
            "revenue_prev": revenue_prev,
            "negative_review_pct": neg,
            "top_complaint": complaint,
            "avg_delivery_days": days,
        }
        user = (
            "Com base nos números abaixo, escreva um insight de negócio curto (3 a 4 frases) para a "
            "diretoria, em português do Brasil, terminando com uma recomendação prática.\n\n"
            f"Período: {period} (comparado a {prev_period})\n"
            f"Segmento: {kind} {seg}\n"
            f"Pedidos: {orders} (mês anterior: {prev_orders})\n"
            f"Receita: {brl(revenue)} (mês anterior: {brl(revenue_prev)})\n"
            f"Avaliações negativas: {pt_number(neg)}% das avaliações\n"
            f"Principal motivo de reclamação: {complaint}\n"
            f"Prazo médio de entrega: {pt_number(days)} dias"
        )
        reference, key_numbers = insight_text(rng, figures)
        rows.append(
            {
                "task": "insights",
                "prompt": messages(user),
                "reference": reference,
                "figures": figures,
                "key_numbers": key_numbers,
            }
        )
    return rows


def movement(change: float, noun: str) -> str:
    if change > 0:
        return f"alta de {pt_number(change)}% {noun}"
    if change < 0:
        return f"queda de {pt_number(-change)}% {noun}"
    return f"estabilidade {noun}"


def insight_text(rng: random.Random, f: dict) -> tuple:
    d_orders = pct_change(f["orders"], f["orders_prev"])
    d_revenue = pct_change(f["revenue"], f["revenue_prev"])
    ticket = round(f["revenue"] / f["orders"], 2)
    ticket_prev = round(f["revenue_prev"] / f["orders_prev"], 2)
    seg = f["segment"]
    s1 = (
        f"Em {f['period']}, a {seg} teve {movement(d_orders, 'nos pedidos')} "
        f"({f['orders']} contra {f['orders_prev']}) e {movement(d_revenue, 'na receita')}, "
        f"que fechou em {brl(f['revenue'])}."
    )
    direction = "subiu" if ticket > ticket_prev else "caiu"
    s2 = f"O ticket médio {direction} de {brl(ticket_prev)} para {brl(ticket)}."
    neg = pt_number(f["negative_review_pct"])
    reason = COMPLAINTS[f["top_complaint"]]
    if f["negative_review_pct"] >= 15:
        s3 = (
            f"O ponto de atenção é a satisfação: {neg}% das avaliações foram negativas, "
            f"puxadas principalmente por reclamações de {reason}"
        )
        if f["top_complaint"] == "entrega":
            s3 += f", com prazo médio de {pt_number(f['avg_delivery_days'])} dias"
        s3 += "."
        s4 = rng.choice(RECOMMENDATIONS[f["top_complaint"]])
    else:
        s3 = (
            f"A satisfação segue saudável, com {neg}% de avaliações negativas; "
            f"as reclamações mais comuns ainda são de {reason}."
        )
        s4 = GROWTH_RECOMMENDATION if d_revenue > 5 else rng.choice(RECOMMENDATIONS[f["top_complaint"]])
    keys = [f"{pt_number(abs(d_orders))}%", brl(f["revenue"]), f"{neg}%"]
    return " ".join([s1, s2, s3, s4]), keys


# ----------------------------------------------------------------------------- push

EVENT_LABELS = {
    "abandoned_cart": "carrinho abandonado",
    "price_drop": "queda de preço de um produto favoritado",
    "back_in_stock": "produto favoritado voltou ao estoque",
    "order_shipped": "pedido enviado",
    "review_request": "pedido entregue há 5 dias, sem avaliação",
    "birthday": "aniversário do cliente",
    "free_shipping": "frete grátis na cidade do cliente neste fim de semana",
    "replenishment": "hora de recomprar um produto de uso contínuo",
}
PUSH_TEMPLATES = {
    "abandoned_cart": [
        "{name}, {product} ainda está no seu carrinho 🛒 Finalize hoje com {discount}% OFF!",
        "Esqueceu algo, {name}? {product} te espera no carrinho, agora com {discount}% de desconto.",
    ],
    "price_drop": [
        "{name}, {product} baixou de {old} para {new}! Aproveite enquanto dura 🔥",
        "Baixou! {product} por {new} (antes {old}). Corre, {name}!",
    ],
    "back_in_stock": [
        "{name}, voltou! {product} está de novo em estoque. Garanta o seu antes que acabe.",
        "Boa notícia, {name}: {product} voltou ao estoque ✨",
    ],
    "order_shipped": [
        "{name}, seu pedido #{order_id} saiu para entrega e chega até {eta} 📦",
        "Pedido #{order_id} a caminho, {name}! Previsão de entrega: {eta}.",
    ],
    "review_request": [
        "{name}, o que achou de {product}? Sua avaliação leva 1 minuto ⭐",
        "Conta pra gente, {name}: {product} atendeu às expectativas? Avalie agora.",
    ],
    "birthday": [
        "Feliz aniversário, {name}! 🎉 Seu presente: {discount}% OFF em todo o site até domingo.",
        "{name}, hoje o dia é seu! Use o cupom NIVER{discount} e ganhe {discount}% de desconto 🎂",
    ],
    "free_shipping": [
        "{name}, frete grátis para {city} neste fim de semana! Que tal levar {product}?",
        "Só neste fim de semana: frete grátis em {city}, {name} 🚚",
    ],
    "replenishment": [
        "{name}, seu {product} deve estar acabando. Recompre agora e receba em 2 dias.",
        "Hora de repor, {name}! {product} com entrega rápida para {city}.",
    ],
}
# Products that make sense for "hora de recomprar" (all masculine nouns for "seu ...").
REPLENISH = ["Protetor solar facial FPS 50", "Kit shampoo e condicionador Natura", "Hidratante corporal Nivea 400ml"]


def push_rows(rng: random.Random) -> list:
    events = list(PUSH_TEMPLATES)
    rows = []
    for k in range(50):
        event = events[k % len(events)]
        name = rng.choice(FIRST_NAMES)
        city, state = rng.choice(CITIES)
        product, _, price = rng.choice(PRODUCTS)
        if event == "replenishment":
            product = rng.choice(REPLENISH)
        ctx = {"customer_name": name, "city": city, "state": state, "event": event, "product": product}
        lines = [f"Cliente: {name}, {city} ({state})", f"Evento: {EVENT_LABELS[event]}"]
        if event not in ("birthday",):
            lines.append(f"Produto: {product}")
        if event in ("abandoned_cart", "birthday"):
            ctx["discount_pct"] = rng.choice([5, 10, 15, 20])
            lines.append(f"Desconto disponível: {ctx['discount_pct']}%")
        if event == "price_drop":
            ctx["old_price"] = price
            ctx["new_price"] = round(price * rng.choice([0.8, 0.85, 0.9]), 2)
            lines.append(f"Preço: de {brl(price)} por {brl(ctx['new_price'])}")
        if event == "order_shipped":
            ctx["order_id"] = rng.randint(1000, 9999)
            ctx["delivery_by"] = f"{rng.randint(1, 28):02d}/0{rng.randint(7, 9)}"
            lines.append(f"Pedido: #{ctx['order_id']}, entrega prevista até {ctx['delivery_by']}")
        user = (
            f"Escreva uma notificação push para o cliente abaixo. No máximo {PUSH_MAX_CHARS} caracteres, "
            "tom amigável, no máximo um emoji. Responda só com o texto da notificação.\n\n"
            + "\n".join(lines)
        )
        fill = {
            "name": name,
            "product": product,
            "city": city,
            "discount": ctx.get("discount_pct", ""),
            "old": brl(ctx.get("old_price", 0.0)),
            "new": brl(ctx.get("new_price", 0.0)),
            "order_id": ctx.get("order_id", ""),
            "eta": ctx.get("delivery_by", ""),
        }
        options = [t.format(**fill) for t in PUSH_TEMPLATES[event]]
        rng.shuffle(options)
        fitting = [t for t in options if len(t) <= PUSH_MAX_CHARS]
        if not fitting:
            raise SystemExit(f"no push template fits {PUSH_MAX_CHARS} chars for {ctx}")
        rows.append(
            {
                "task": "push",
                "prompt": messages(user),
                "reference": fitting[0],
                "context": ctx,
                "max_chars": PUSH_MAX_CHARS,
            }
        )
    return rows


# ----------------------------------------------------------------------------- completions sample

def seed_normalize_pt_decimals(s: str) -> str:
    """The seed report's (V4.1) _normalize_pt_decimals, verbatim in behaviour."""
    result, in_string, escape_next = [], False, False
    i = 0
    while i < len(s):
        c = s[i]
        if escape_next:
            result.append(c)
            escape_next = False
            i += 1
            continue
        if c == "\\" and in_string:
            result.append(c)
            escape_next = True
            i += 1
            continue
        if c == '"':
            in_string = not in_string
            result.append(c)
            i += 1
            continue
        if not in_string:
            m = re.match(r"(\d+),(\d+)", s[i:])
            if m:
                result.append(m.group(1) + "." + m.group(2))
                i += len(m.group(0))
                continue
        result.append(c)
        i += 1
    return "".join(result)


def seed_extract_json(text: str):
    """The seed report's (V4.1) _extract_json, verbatim in behaviour."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.MULTILINE).strip()
    for attempt in [stripped, seed_normalize_pt_decimals(stripped)]:
        try:
            result = json.loads(attempt)
            if isinstance(result, dict):
                return result
        except (json.JSONDecodeError, TypeError):
            pass
        match = re.search(r"\{[\s\S]*\}", attempt)
        if match:
            try:
                result = json.loads(match.group())
                if isinstance(result, dict):
                    return result
            except (json.JSONDecodeError, TypeError):
                pass
    return None


def strict_ok(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def as_json(expected: dict, pt_decimal: bool, indent=None) -> str:
    text = json.dumps(expected, ensure_ascii=False, indent=indent)
    if pt_decimal:
        score = expected["sentiment_score"]
        text = text.replace(f'"sentiment_score": {json.dumps(score)}',
                            f'"sentiment_score": {pt_number(score)}')
    return text


def completion_rows(eval_extraction: list) -> list:
    """Plausible model outputs for the extraction eval prompts, one quirk each."""
    quirks = [
        ("clean", lambda e: as_json(e, False)),
        ("pt_decimal", lambda e: as_json(e, True)),
        ("pt_decimal_pretty", lambda e: as_json(e, True, indent=2)),
        ("code_fence", lambda e: "```json\n" + as_json(e, False, indent=2) + "\n```"),
        ("code_fence_pt_decimal", lambda e: "```json\n" + as_json(e, True, indent=2) + "\n```"),
        ("prose_around", lambda e: "Claro! Segue a extração da avaliação:\n\n" + as_json(e, False)
         + "\n\nSe precisar de mais alguma análise, é só pedir."),
        ("prose_around_pt_decimal", lambda e: "Aqui está o JSON solicitado: " + as_json(e, True)
         + " Observação: a nota foi estimada a partir do tom da avaliação."),
        ("trailing_comma", lambda e: as_json(e, False, indent=2)[:-2] + ",\n}"),
        ("truncated", lambda e: as_json(e, False, indent=2)[:70]),
        ("think_block", lambda e: "<think>\nO cliente descreve a experiência; vou classificar o sentimento "
         "e a categoria.\n</think>\n" + as_json(e, True)),
        ("single_quotes", lambda e: as_json(e, False).replace('"', "'")),
        ("wrong_values", lambda e: as_json(dict(e, sentiment="positivo" if e["sentiment"] != "positivo"
                                                else "negativo", complaint_category="outro"), False)),
        ("pt_decimal_trailing_note", lambda e: as_json(e, True) + "\n(nota: 0,0 = péssimo, 5,0 = excelente)"),
        ("braces_in_prose", lambda e: "Segui o formato {chave: valor} pedido:\n" + as_json(e, True)),
        ("empty", lambda e: ""),
    ]
    rows = []
    for k, (quirk, make) in enumerate(quirks):
        target = eval_extraction[k % len(eval_extraction)]
        text = make(target["expected"])
        parsed = seed_extract_json(text)
        rows.append(
            {
                "id": f"completion-{k + 1:03d}",
                "prompt_id": target["id"],
                "task": "extraction",
                "quirk": quirk,
                "completion": text,
                "strict_json_ok": strict_ok(text),
                "seed_parser_ok": parsed is not None,
                "seed_parser_matches_expected": parsed == target["expected"],
            }
        )
    return rows


# ----------------------------------------------------------------------------- main

def interleave(groups: list) -> list:
    out = []
    for k in range(max(len(g) for g in groups)):
        out.extend(g[k] for g in groups if k < len(g))
    return out


def write_jsonl(path: str, rows: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {os.path.relpath(path, HERE)}: {len(rows)} rows")


def main() -> None:
    rng = random.Random(SEED)
    db_path = os.path.join(HERE, "commerce.db")
    if not os.path.exists(db_path):
        raise SystemExit("commerce.db is missing: run build_commerce_db.py first")
    tasks = [extraction_rows(rng), sql_rows(rng, db_path), insight_rows(rng), push_rows(rng)]
    train_groups, eval_groups = [], []
    for rows in tasks:
        task = rows[0]["task"]
        for split, part in (("eval", rows[:N_EVAL]), ("train", rows[N_EVAL:])):
            for k, row in enumerate(part, start=1):
                row_with_id = {"id": f"{task}-{split}-{k:03d}"}
                row_with_id.update(row)
                part[k - 1] = row_with_id
            (eval_groups if split == "eval" else train_groups).append(part)
    out = os.path.join(HERE, "pairs")
    write_jsonl(os.path.join(out, "train.jsonl"), interleave(train_groups))
    write_jsonl(os.path.join(out, "eval.jsonl"), interleave(eval_groups))
    write_jsonl(os.path.join(out, "completions_sample.jsonl"), completion_rows(eval_groups[0]))


if __name__ == "__main__":
    main()
