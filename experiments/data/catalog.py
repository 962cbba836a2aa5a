"""Shared fictional catalogue for the example data (names, cities, products).

Written for this project (Apache-2.0). Imported by build_commerce_db.py and make_pairs.py
so the SQLite database and the PT-BR pairs talk about the same shop.
"""

# (city, state) pairs, Brazilian capitals and large cities.
CITIES = [
    ("São Paulo", "SP"),
    ("Rio de Janeiro", "RJ"),
    ("Belo Horizonte", "MG"),
    ("Salvador", "BA"),
    ("Recife", "PE"),
    ("Fortaleza", "CE"),
    ("Curitiba", "PR"),
    ("Porto Alegre", "RS"),
    ("Brasília", "DF"),
    ("Manaus", "AM"),
    ("Goiânia", "GO"),
    ("Florianópolis", "SC"),
    ("Campinas", "SP"),
    ("Belém", "PA"),
]

# Relative weight of each city when drawing customers (bigger cities, more customers).
CITY_WEIGHTS = [14, 9, 6, 5, 5, 4, 5, 4, 4, 2, 3, 3, 4, 2]

FIRST_NAMES = [
    "Ana", "Bruno", "Camila", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique",
    "Isabela", "João", "Larissa", "Lucas", "Mariana", "Matheus", "Natália", "Otávio",
    "Patrícia", "Rafael", "Sofia", "Thiago", "Vitória", "Gustavo", "Beatriz", "Pedro",
    "Juliana", "Rodrigo", "Fernanda", "Carlos", "Letícia", "André", "Aline", "Marcelo",
    "Renata", "Vinícius", "Priscila", "Leonardo", "Tatiane", "Fábio", "Jéssica", "Caio",
]

SURNAMES = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira",
    "Lima", "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes",
    "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade",
    "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas", "Cardoso", "Teixeira",
]

# (name, category, price in BRL)
PRODUCTS = [
    ("Fone de ouvido Bluetooth JBL Tune 510", "Eletrônicos", 249.90),
    ("Smartphone Samsung Galaxy A15", "Eletrônicos", 1099.00),
    ("Carregador turbo USB-C 25W", "Eletrônicos", 89.90),
    ("Smartwatch Amazfit Bip 5", "Eletrônicos", 449.00),
    ("Caixa de som JBL Go 3", "Eletrônicos", 229.90),
    ("Mouse sem fio Logitech M170", "Eletrônicos", 69.90),
    ("Teclado mecânico Redragon Kumara", "Eletrônicos", 259.90),
    ("Air fryer Mondial 4L", "Eletrodomésticos", 399.90),
    ("Liquidificador Philco 1200W", "Eletrodomésticos", 179.90),
    ("Cafeteira Nespresso Essenza Mini", "Eletrodomésticos", 499.00),
    ("Aspirador robô WAP", "Eletrodomésticos", 899.00),
    ("Ventilador Arno 40cm", "Eletrodomésticos", 229.90),
    ("Micro-ondas Electrolux 20L", "Eletrodomésticos", 649.00),
    ("Ferro a vapor Black+Decker", "Eletrodomésticos", 129.90),
    ("Jogo de panelas Tramontina 5 peças", "Casa e Cozinha", 389.90),
    ("Jogo de cama casal 4 peças", "Casa e Cozinha", 159.90),
    ("Garrafa térmica Stanley 1L", "Casa e Cozinha", 299.00),
    ("Conjunto de potes herméticos 10 peças", "Casa e Cozinha", 89.90),
    ("Toalha de banho gigante", "Casa e Cozinha", 59.90),
    ("Luminária de mesa LED", "Casa e Cozinha", 119.90),
    ("Tênis Olympikus Corre 3", "Moda", 399.99),
    ("Camiseta básica de algodão", "Moda", 49.90),
    ("Calça jeans masculina slim", "Moda", 159.90),
    ("Vestido midi floral", "Moda", 189.90),
    ("Mochila Samsonite executiva", "Moda", 349.00),
    ("Chinelo Havaianas Top", "Moda", 39.99),
    ("Jaqueta corta-vento", "Moda", 219.90),
    ("Protetor solar facial FPS 50", "Beleza", 79.90),
    ("Kit shampoo e condicionador Natura", "Beleza", 69.90),
    ("Perfume Boticário Malbec 100ml", "Beleza", 229.90),
    ("Secador de cabelo Taiff 2000W", "Beleza", 259.90),
    ("Hidratante corporal Nivea 400ml", "Beleza", 34.90),
    ("Base líquida Ruby Rose", "Beleza", 29.90),
    ("Bicicleta aro 29 Caloi", "Esporte", 1899.00),
    ("Par de halteres 2kg", "Esporte", 79.90),
    ("Tapete de yoga", "Esporte", 99.90),
    ("Bola de futebol Penalty", "Esporte", 149.90),
    ("Garrafa squeeze 1L", "Esporte", 29.90),
    ("Corda de pular", "Esporte", 24.90),
    ("Kit elásticos de resistência", "Esporte", 59.90),
]

CATEGORIES = ["Eletrônicos", "Eletrodomésticos", "Casa e Cozinha", "Moda", "Beleza", "Esporte"]

MONTHS_PT = {
    1: "janeiro", 2: "fevereiro", 3: "março", 4: "abril", 5: "maio", 6: "junho",
    7: "julho", 8: "agosto", 9: "setembro", 10: "outubro", 11: "novembro", 12: "dezembro",
}


def brl(value: float) -> str:
    """Format a number as Brazilian reais: 48210.5 -> 'R$ 48.210,50'."""
    return "R$ " + pt_number(value, 2)


def pt_number(value: float, decimals: int = 1) -> str:
    """Format a number the PT-BR way: thousands '.', decimal ','."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")
