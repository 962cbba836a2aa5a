"""Hand-written PT-BR customer reviews with their reference extraction labels.

Written for this project (Apache-2.0); every review is fictional. Used by make_pairs.py.
Each entry: (review text, product, sentiment, sentiment_score, complaint_category, requires_response)
  sentiment          positivo | neutro | negativo
  sentiment_score    0.0-5.0, one decimal (the JSON answer uses a number: 4.5, never "4,5")
  complaint_category entrega | produto | atendimento | pagamento | outro | nenhuma (no complaint)
  requires_response  true when the customer asks for something or a problem is still open
"""

REVIEWS = [
    ("Pedi o fone JBL Tune 510 com entrega prevista para sexta e só chegou na quarta seguinte. "
     "O som é bom, mas o atraso estragou a surpresa de aniversário.",
     "Fone de ouvido Bluetooth JBL Tune 510", "negativo", 2.0, "entrega", False),
    ("A air fryer Mondial chegou com a tampa trincada. Abri a solicitação de troca e quero saber "
     "quando vão buscar o produto.",
     "Air fryer Mondial 4L", "negativo", 1.0, "produto", True),
    ("Melhor compra do ano! A garrafa Stanley mantém o café quente o dia inteiro. Chegou em dois dias.",
     "Garrafa térmica Stanley 1L", "positivo", 5.0, "nenhuma", False),
    ("O liquidificador Philco é potente, mas faz muito barulho. Para o preço, está ok.",
     "Liquidificador Philco 1200W", "neutro", 3.0, "produto", False),
    ("Paguei com Pix às 10h e o pedido continuou como 'aguardando pagamento' por três dias. "
     "Preciso que confirmem o pagamento, tenho o comprovante.",
     "Smartphone Samsung Galaxy A15", "negativo", 1.5, "pagamento", True),
    ("Atendente muito educada no chat, resolveu minha dúvida sobre a voltagem do micro-ondas em minutos. "
     "Dou nota 4,5.",
     "Micro-ondas Electrolux 20L", "positivo", 4.5, "nenhuma", False),
    ("O tênis Olympikus Corre 3 é confortável, mas veio um número menor do que o pedido. "
     "Como faço para trocar?",
     "Tênis Olympikus Corre 3", "negativo", 2.0, "produto", True),
    ("Comprei o jogo de panelas Tramontina para minha mãe e ela adorou. Entrega antes do prazo.",
     "Jogo de panelas Tramontina 5 peças", "positivo", 5.0, "nenhuma", False),
    ("Liguei quatro vezes para o SAC por causa do aspirador robô que não carrega e cada atendente "
     "me dá uma resposta diferente. Ninguém resolve.",
     "Aspirador robô WAP", "negativo", 0.5, "atendimento", True),
    ("Camiseta de algodão boa, tecido grosso. Só achei a modelagem um pouco curta.",
     "Camiseta básica de algodão", "neutro", 3.5, "produto", False),
    ("O boleto venceu antes de eu conseguir pagar porque o e-mail com o código chegou atrasado. "
     "Perdi o desconto da promoção.",
     "Cafeteira Nespresso Essenza Mini", "negativo", 2.0, "pagamento", False),
    ("Entrega rápida, embalagem caprichada e o perfume Malbec é original. Recomendo a loja.",
     "Perfume Boticário Malbec 100ml", "positivo", 4.5, "nenhuma", False),
    ("A transportadora deixou a bicicleta Caloi na portaria sem avisar e o pacote estava rasgado. "
     "A bike não tem danos, mas podia ter tido.",
     "Bicicleta aro 29 Caloi", "neutro", 3.0, "entrega", False),
    ("Produto chegou certinho, funciona bem. Nada a reclamar, nada a elogiar.",
     "Mouse sem fio Logitech M170", "neutro", 3.0, "nenhuma", False),
    ("O smartwatch Amazfit parou de sincronizar com o celular depois de uma semana. "
     "Quero o reembolso.",
     "Smartwatch Amazfit Bip 5", "negativo", 1.0, "produto", True),
    ("Gostei muito do vestido midi, o tecido é leve e a estampa é linda. Nota 4,8!",
     "Vestido midi floral", "positivo", 4.8, "nenhuma", False),
    ("Rastreamento parado há 10 dias em Curitiba. Ninguém me informa nada. Cadê meu ventilador?",
     "Ventilador Arno 40cm", "negativo", 1.0, "entrega", True),
    ("O protetor solar não deixa a pele oleosa e tem boa textura. Chegou dentro do prazo.",
     "Protetor solar facial FPS 50", "positivo", 4.5, "nenhuma", False),
    ("Cobraram o frete duas vezes no cartão de crédito. Já mandei o print da fatura, aguardo o estorno.",
     "Jogo de cama casal 4 peças", "negativo", 1.5, "pagamento", True),
    ("Teclado mecânico excelente para o preço, as teclas são firmes. Só a iluminação é meio fraca.",
     "Teclado mecânico Redragon Kumara", "positivo", 4.0, "nenhuma", False),
    ("A caixa de som JBL Go 3 veio sem o cabo de carregamento. Entrei em contato e me enviaram "
     "o cabo em dois dias. Atendimento nota 10.",
     "Caixa de som JBL Go 3", "positivo", 4.0, "produto", False),
    ("Secador Taiff esquenta bem, mas o cabo é curto. Cumpre o que promete.",
     "Secador de cabelo Taiff 2000W", "neutro", 3.5, "produto", False),
    ("O chat ficou 40 minutos na fila e depois encerrou sozinho. Ainda não sei se posso devolver "
     "a mochila.",
     "Mochila Samsonite executiva", "negativo", 1.5, "atendimento", True),
    ("Halteres bem acabados, chegaram rápido. Ótimo para treinar em casa.",
     "Par de halteres 2kg", "positivo", 4.5, "nenhuma", False),
    ("Recebi a calça jeans de outra cor. A loja trocou sem custo, mas demorou duas semanas.",
     "Calça jeans masculina slim", "neutro", 2.5, "produto", False),
    ("O kit da Natura chegou com o shampoo vazado e melou a caixa inteira.",
     "Kit shampoo e condicionador Natura", "negativo", 1.0, "entrega", True),
    ("Luminária bonita e com três níveis de luz. Comprei mais uma para o escritório.",
     "Luminária de mesa LED", "positivo", 5.0, "nenhuma", False),
    ("O pedido foi entregue no prazo, mas o carregador esquenta bastante. Vou observar.",
     "Carregador turbo USB-C 25W", "neutro", 3.0, "produto", False),
    ("Tentei pagar com cartão três vezes e a compra foi recusada sem motivo. No Pix funcionou. "
     "Tirando isso, a entrega foi rápida.",
     "Tapete de yoga", "neutro", 3.0, "pagamento", False),
    ("Os potes herméticos são ótimos, vedam bem e cabem na geladeira. Voltarei a comprar.",
     "Conjunto de potes herméticos 10 peças", "positivo", 4.5, "nenhuma", False),
    ("Fui muito mal atendido pelo entregador, que jogou a caixa por cima do portão.",
     "Micro-ondas Electrolux 20L", "negativo", 1.5, "entrega", True),
    ("A jaqueta corta-vento é boa, mas o zíper emperra às vezes. Nota 3,5 de 5.",
     "Jaqueta corta-vento", "neutro", 3.5, "produto", False),
    ("Chinelo Havaianas original, confortável e chegou em 3 dias. Perfeito.",
     "Chinelo Havaianas Top", "positivo", 5.0, "nenhuma", False),
    ("Fiz o pedido há 20 dias e ainda aparece 'em separação'. Quero cancelar e receber o dinheiro de volta.",
     "Cafeteira Nespresso Essenza Mini", "negativo", 0.5, "entrega", True),
    ("O hidratante Nivea é o mesmo do mercado, mas aqui saiu mais barato. Bom negócio.",
     "Hidratante corporal Nivea 400ml", "positivo", 4.0, "nenhuma", False),
    ("A base Ruby Rose veio com a tampa quebrada, mas o produto estava lacrado. Dá para usar.",
     "Base líquida Ruby Rose", "neutro", 2.5, "entrega", False),
    ("Ferro a vapor vazando água desde o primeiro uso. Produto com defeito de fábrica.",
     "Ferro a vapor Black+Decker", "negativo", 1.0, "produto", True),
    ("Comprei a bola Penalty para o meu filho, chegou rapidinho e ele não larga mais. Nota 4,5.",
     "Bola de futebol Penalty", "positivo", 4.5, "nenhuma", False),
    ("O atendimento prometeu retorno em 24 horas sobre a garantia do smartphone e já faz uma semana.",
     "Smartphone Samsung Galaxy A15", "negativo", 1.0, "atendimento", True),
    ("Toalha macia e grande de verdade. Só desbotou um pouco na primeira lavagem.",
     "Toalha de banho gigante", "neutro", 3.5, "produto", False),
    ("A squeeze é leve e não vaza. Para o preço, excelente.",
     "Garrafa squeeze 1L", "positivo", 4.5, "nenhuma", False),
    ("Pedi nota fiscal em nome da empresa e veio no meu CPF. Preciso da nota correta para reembolso.",
     "Mochila Samsonite executiva", "neutro", 2.5, "outro", True),
    ("Os elásticos de resistência são bons, mas um deles arrebentou no segundo treino.",
     "Kit elásticos de resistência", "negativo", 2.0, "produto", True),
    ("Air fryer prática e fácil de limpar. Entregaram no dia seguinte em São Paulo!",
     "Air fryer Mondial 4L", "positivo", 5.0, "nenhuma", False),
    ("O site aceitou o cupom, mas o desconto não apareceu no valor final. Quero o valor do cupom de volta.",
     "Fone de ouvido Bluetooth JBL Tune 510", "negativo", 1.5, "pagamento", True),
    ("Corda de pular simples, cumpre a função. Entrega normal.",
     "Corda de pular", "neutro", 3.0, "nenhuma", False),
    ("Adorei o jogo de cama, mas a embalagem chegou molhada por causa da chuva. Os lençóis secaram "
     "e estão perfeitos. Nota 4,0.",
     "Jogo de cama casal 4 peças", "positivo", 4.0, "entrega", False),
    ("A loja mandou e-mail pedindo avaliação antes mesmo de o produto chegar. Achei estranho.",
     "Liquidificador Philco 1200W", "neutro", 3.0, "outro", False),
    ("O atendente do WhatsApp foi super paciente e me ajudou a escolher o smartwatch certo.",
     "Smartwatch Amazfit Bip 5", "positivo", 4.5, "nenhuma", False),
    ("O aspirador robô é ótimo no piso, mas se perde no tapete. Nota 3,5, daria 4,5 se a bateria durasse mais.",
     "Aspirador robô WAP", "neutro", 3.5, "produto", False),
]
