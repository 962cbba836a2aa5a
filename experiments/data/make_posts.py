#!/usr/bin/env python3
"""Write posts/train.jsonl (60 rows) and posts/eval.jsonl (20 rows): short social posts that
admit many plausible replies, each with one reference reply, for the polychromic (diversity) task.

    python3 experiments/data/make_posts.py

Row: {"id", "post", "reply"} (same shape as ../shared/data/chitchat/pairs.jsonl).
Every post and reply below was written for this project (Apache-2.0); none is copied.
Deterministic split (seeded shuffle); Python 3.11 standard library only.
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 3
N_EVAL = 20

POSTS = [
    ("Just adopted a rescue cat and she refuses to leave the bathroom. Any tips?",
     "Give her time! Put her food and litter box in there and let her come out on her own terms."),
    ("Finally finished my first marathon today. My legs are jelly.",
     "Congratulations! Eat something salty, drink lots of water, and take the stairs backwards tomorrow."),
    ("Is it weird to eat cereal for dinner three nights in a row?",
     "Not weird, that's just efficient. Add a banana and call it a balanced meal."),
    ("My sourdough starter died while I was on vacation. RIP Doughy.",
     "Gone but not forgotten. Next time stick it in the fridge before you leave, it sleeps there."),
    ("What's a book you've reread more than twice?",
     "The Hobbit. It's short, cozy, and somehow I notice something new every time."),
    ("Our team lost the final by one point and I can't stop replaying the last minute.",
     "That stings. One point means you were right there, though. Next season."),
    ("Started learning the guitar at 40. My fingertips hate me.",
     "They'll toughen up in a couple of weeks. Keep sessions short and daily."),
    ("Rain all weekend. Movie recommendations?",
     "Paddington 2. Trust me, it's better than it has any right to be."),
    ("Got a job offer but it means moving across the country. Terrified and excited.",
     "That's the best kind of scary. What's pulling you toward saying yes?"),
    ("My neighbour has been practising the trumpet at 7am every day this week.",
     "Honestly impressive dedication. Maybe suggest 9am as a compromise?"),
    ("Tried to make pad thai at home and it turned into a sticky brick.",
     "Soak the noodles in warm water, not boiling, and add them to the pan at the very end."),
    ("Which is better for a first trip to Japan, Tokyo or Kyoto?",
     "Do both! The bullet train makes it easy. Tokyo for energy, Kyoto for temples and slow mornings."),
    ("I forgot my best friend's birthday for the first time in ten years.",
     "Call them today and own it. A late celebration can be even more fun."),
    ("Just planted tomatoes on my balcony. Fingers crossed.",
     "Nice! Give them the sunniest spot you've got and water in the morning."),
    ("Is it worth buying a standing desk?",
     "For me, yes, but only because I actually switch positions. Standing all day is just as bad."),
    ("My kid asked me why the sky is blue and I panicked.",
     "Tell them sunlight bounces around in the air and blue bounces the most. Then google it together."),
    ("Coffee or tea to get through a long night of studying?",
     "Tea. Steadier energy, less of a crash at 3am."),
    ("Three interviews this week. Wish me luck.",
     "Good luck! Have a couple of stories ready about problems you solved, they carry every interview."),
    ("Why does every printer stop working right before a deadline?",
     "Printers can smell fear. Save a PDF as a backup and print at a library."),
    ("Just watched the sunrise from the top of a mountain for the first time.",
     "That sounds unreal. Was the cold climb worth it?"),
    ("My plants keep dying no matter what I do.",
     "Most houseplants die from too much water. Try a snake plant, they thrive on neglect."),
    ("Thinking about getting a dog, but I work long hours.",
     "Maybe look into an older rescue dog, they're often calmer and happier with a dog walker midday."),
    ("Anyone else still use a paper planner?",
     "Always. Crossing things out by hand is half the motivation."),
    ("I accidentally replied-all to the whole company.",
     "Happens to everyone once. Keep calm and let it get buried under the next reply-all."),
    ("Made my grandmother's lasagna recipe and it tasted exactly like hers.",
     "That's the best feeling. Did you write the recipe down somewhere safe?"),
    ("Our flight got cancelled and we're stuck at the airport overnight.",
     "Ugh. Ask the airline for a hotel voucher, they often have them even if they don't offer."),
    ("What's the most underrated city you've visited?",
     "Porto. Great food, friendly people, and half the price of Lisbon."),
    ("I finally cleaned out my closet and found 14 black t-shirts.",
     "So you have a uniform now. Very Steve Jobs of you."),
    ("Is it rude to leave a party without saying goodbye?",
     "Depends on the party. At a big one nobody notices, at a dinner for six they definitely will."),
    ("My phone screen cracked on day two of owning it.",
     "Painful. Check if the store offers a screen replacement, some include one in the first month."),
    ("Went to a concert alone for the first time and loved it.",
     "Solo concerts are underrated. You get to go exactly where you want in the crowd."),
    ("The new season of my favourite show was a letdown.",
     "Same feeling here. It felt like they rushed the ending."),
    ("Trying to drink more water. How do people do it?",
     "Keep a bottle on your desk at all times. If it's in sight, you'll sip it."),
    ("Locked myself out of my apartment in my pajamas.",
     "Classic. Did a neighbour take pity on you while you waited?"),
    ("What do you cook when you have zero energy?",
     "Scrambled eggs on toast. Five minutes, one pan, and it feels like real food."),
    ("I just ran my first 5k without stopping!",
     "Huge milestone! Next stop 10k?"),
    ("Should I learn Python or JavaScript first?",
     "Python. The syntax gets out of your way so you can focus on thinking like a programmer."),
    ("My cat knocked my coffee onto my laptop this morning.",
     "Turn it off, flip it upside down, and don't try to power it on for a couple of days."),
    ("Found a $20 bill in a jacket I haven't worn since last winter.",
     "Past you is looking out for present you. Treat yourself."),
    ("Every time I wash my car, it rains the next day.",
     "You should rent out that power during droughts."),
    ("Just moved into my first apartment with no roommates.",
     "Enjoy the silence! Buy a good lamp, overhead lights are the worst."),
    ("Do you prefer sunrise or sunset?",
     "Sunset, because I'm never awake for sunrise."),
    ("Our dog learned to open the fridge. Send help.",
     "A child-safety latch saved us from the exact same problem."),
    ("I haven't read a book in a year and I miss it.",
     "Start with something short and fun. A novella you can finish in a weekend."),
    ("Spent the whole day fixing a bug that was a missing comma.",
     "The classic. At least you'll never miss that comma again."),
    ("Is it worth visiting Iceland in winter?",
     "Yes if you want the northern lights, but rent a car with good tires and check road conditions daily."),
    ("My grandpa just got his first smartphone and sends me a thumbs up to everything.",
     "That's adorable. Teach him voice messages next."),
    ("Baked cookies for the office and they vanished in ten minutes.",
     "That's the highest review a baker can get. Recipe please?"),
    ("Missed my train by literally one second.",
     "The doors closing right in your face is a special kind of pain."),
    ("What hobby changed your life?",
     "Climbing. It got me out of the house and introduced me to half of my friends."),
    ("I keep buying notebooks and never writing in them.",
     "Use one as a messy scratchpad. The pressure to make it nice is what stops you."),
    ("Snowed in for the third day. Board game suggestions?",
     "Ticket to Ride. Easy to learn and you can play it over and over."),
    ("Just realised I've been pronouncing 'quinoa' wrong for years.",
     "Keen-wah. Don't worry, half of us learned it the same way."),
    ("My team at work is switching to a four-day week.",
     "Lucky! Is it the same hours squeezed into four days, or actually fewer?"),
    ("Took my grandmother to the beach for her 90th birthday.",
     "What a gift. I hope she got her feet in the water."),
    ("Anyone else feel weirdly productive when it's raining?",
     "Always. No fear of missing out on nice weather."),
    ("My toddler only wants to eat beige food.",
     "Totally normal phase. Keep offering other things without pressure, it passes."),
    ("I finally beat the final boss after 40 tries.",
     "That victory must have felt incredible. What finally worked?"),
    ("What's your go-to comfort movie?",
     "The Princess Bride. Every line is quotable."),
    ("Heading to my first job interview in person in two years.",
     "You'll be great. Arrive ten minutes early and bring a copy of your CV just in case."),
    ("Just signed up for a pottery class.",
     "Fun! Expect your first bowl to be a very charming ashtray."),
    ("My landlord says the heating will be fixed 'soon'. It's been a month.",
     "Put the request in writing with dates. It tends to speed things up."),
    ("I think I'm the only person who doesn't like pizza.",
     "More for the rest of us, but I respect the confidence."),
    ("Spent the day at the zoo and the penguins were the highlight.",
     "Penguins are always the highlight. They have the best walk."),
    ("Can't decide between a laptop and a tablet for university.",
     "Laptop. You'll write a lot, and a real keyboard matters."),
    ("My sister is getting married next month and I have to give a speech.",
     "Keep it under three minutes, one funny story, one heartfelt line, and raise your glass."),
    ("Is it normal to still get nervous before every presentation?",
     "Completely. Most good speakers do. The nerves mean you care."),
    ("We finally painted the living room and it looks like a new house.",
     "Paint is the cheapest renovation there is. What colour did you go with?"),
    ("First time making sushi at home. It was ugly but delicious.",
     "Ugly sushi tastes exactly the same. Sharp knife and wet hands help with the rolling."),
    ("The power went out and I realised I don't own a single candle.",
     "Time to build an emergency drawer: candles, matches, a flashlight and batteries."),
    ("Just got back from a week without internet.",
     "How did it feel? Refreshing or stressful?"),
    ("My coworker brings fish to reheat in the microwave every day.",
     "A bold move. Maybe suggest a cold salad day?"),
    ("What's one skill everyone should learn?",
     "Basic cooking. It saves money and makes you the friend everyone wants to visit."),
    ("Went to bed early for once and woke up a new person.",
     "Sleep is the most underrated productivity hack."),
    ("Our cat had kittens and now we have six cats.",
     "Congratulations, I think? Are you keeping any of them?"),
    ("Is a cold shower in the morning worth it?",
     "It wakes me up better than coffee, but I only last thirty seconds."),
    ("I tried yoga for the first time and could barely touch my knees.",
     "Everyone starts there. Flexibility comes faster than you'd think if you keep going."),
    ("My favourite bakery just closed after 30 years.",
     "That's sad. Those places hold so many memories."),
    ("Bought a bike to commute to work. Day one survived.",
     "Well done! Get good lights, and the hills get easier every week."),
    ("Does anyone actually enjoy running?",
     "I didn't for the first month. Now it's the only time my head feels quiet."),
]


def main() -> None:
    if len(POSTS) != 80 or len({p for p, _ in POSTS}) != 80:
        raise SystemExit("expected 80 distinct posts")
    rng = random.Random(SEED)
    order = list(range(len(POSTS)))
    rng.shuffle(order)
    splits = {"eval": order[:N_EVAL], "train": order[N_EVAL:]}
    folder = os.path.join(HERE, "posts")
    os.makedirs(folder, exist_ok=True)
    for split, idxs in splits.items():
        path = os.path.join(folder, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for k, idx in enumerate(idxs, start=1):
                post, reply = POSTS[idx]
                row = {"id": f"post-{split}-{k:03d}", "post": post, "reply": reply}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote posts/{split}.jsonl: {len(idxs)} rows")


if __name__ == "__main__":
    main()
