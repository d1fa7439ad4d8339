"""The hand-written knowledge base behind the demo's prompt set (written for Kaizen, license-clean).

Northwind Outfitters is a fictional outdoor-gear shop with stores in Utrecht and Ghent, a web shop,
a loyalty program (Trailhead) and a companion app (Trailhead app, with a paid Plus tier). Its facts
agree with the evaluation sets in ``shared/evalsets`` but are worded differently, so no workload text
shares an 8-word run with an evaluation prompt or reference (the curator would drop it as contaminated).

Three kinds of source, each turned into prompts by ``demo.workload.build``:

- ``PRODUCTS``: a catalogue table; every product gets a spec passage and a care/feature passage, and
  questions come from attribute templates (``PRODUCT_TEMPLATES``);
- ``DOCUMENTS``: policies, app help pages and troubleshooting guides, each a few passages with
  hand-written questions (one prompt per phrasing) and, for most, a reference answer;
- ``PERSONAS``: short openers some customers type before their question.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    slug: str
    name: str
    category: str
    price_eur: int
    weight_g: int
    spec: str
    """The category's key specification, as a phrase (``rated comfortable down to -5 degrees``)."""
    material: str
    feature: str
    """One sentence on what sets it apart."""
    care: str
    """One sentence of care advice."""
    warranty_years: int


@dataclass(frozen=True)
class Question:
    passage: str
    """Key of the passage that answers it."""
    phrasings: tuple[str, ...]
    reference: str | None


@dataclass(frozen=True)
class Document:
    slug: str
    category: str
    """policy, app or troubleshooting."""
    title: str
    passages: dict[str, str]
    questions: tuple[Question, ...]


def q(passage: str, reference: str | None, *phrasings: str) -> Question:
    return Question(passage=passage, phrasings=phrasings, reference=reference)


CATEGORY_WARRANTY = {"tent": 3, "default": 2}

PRODUCTS: tuple[Product, ...] = (
    Product(
        "ridgeline-2",
        "Ridgeline 2",
        "tent",
        349,
        1850,
        "sleeps two with two doors and two vestibules",
        "20D ripstop nylon with a silicone coating",
        "The inner tent and fly pitch together in under four minutes.",
        "Dry the fly fully before packing it away for storage.",
        3,
    ),
    Product(
        "ridgeline-3",
        "Ridgeline 3",
        "tent",
        429,
        2400,
        "sleeps three with a 4.1 square metre floor",
        "20D ripstop nylon with a silicone coating",
        "A third pole gives near-vertical walls at the head end.",
        "Brush sand out of the zips after every beach trip.",
        3,
    ),
    Product(
        "fjell-tunnel-4",
        "Fjell Tunnel 4",
        "tent",
        589,
        4300,
        "sleeps four and has a 3,000 mm hydrostatic head fly",
        "polyester fly with taped seams",
        "A tunnel design with a large porch that fits a family's packs.",
        "Pitch it at home once a season to check the guylines.",
        3,
    ),
    Product(
        "summit-bivy",
        "Summit Bivy",
        "tent",
        219,
        680,
        "is a one-person shelter with a single hoop pole",
        "waterproof-breathable 3-layer laminate",
        "It packs down to the size of a water bottle.",
        "Store it loosely in a mesh sack, not compressed.",
        3,
    ),
    Product(
        "polar-night-5",
        "Polar Night -5",
        "sleeping bag",
        279,
        1350,
        "is rated comfortable down to -5 degrees",
        "750 fill power responsibly sourced duck down",
        "A draft collar and a zip baffle keep warm air in.",
        "Air it out each morning and store it uncompressed in the cotton sack.",
        2,
    ),
    Product(
        "meadow-8",
        "Meadow +8",
        "sleeping bag",
        89,
        980,
        "is rated comfortable down to 8 degrees",
        "recycled polyester synthetic fill",
        "It unzips fully into a blanket for warm nights.",
        "It can go in the washing machine at 30 degrees.",
        2,
    ),
    Product(
        "alpine-15",
        "Alpine -15",
        "sleeping bag",
        469,
        1790,
        "is rated comfortable down to -15 degrees",
        "850 fill power goose down",
        "A mummy cut with a shaped footbox for winter camping.",
        "Wash it only with a down cleaner and dry it on low heat.",
        2,
    ),
    Product(
        "trailrunner-22",
        "Trailrunner 22",
        "backpack",
        99,
        640,
        "holds 22 litres",
        "recycled 100D nylon",
        "A vest-style harness keeps it steady when running.",
        "Rinse salt and sweat off the harness with fresh water.",
        2,
    ),
    Product(
        "wayfarer-45",
        "Wayfarer 45",
        "backpack",
        189,
        1420,
        "holds 45 litres plus a 5 litre lid",
        "420D nylon with a PU coating",
        "The back length adjusts from 40 to 52 centimetres.",
        "Empty the hip-belt pockets before washing it by hand.",
        2,
    ),
    Product(
        "expedition-70",
        "Expedition 70",
        "backpack",
        289,
        2250,
        "holds 70 litres",
        "abrasion-resistant 630D nylon",
        "An aluminium frame carries loads up to 25 kg.",
        "Hang it to dry with all zips open.",
        2,
    ),
    Product(
        "gale-shell",
        "Gale Shell",
        "jacket",
        259,
        390,
        "has a 20,000 mm waterproof rating",
        "3-layer recycled nylon membrane",
        "Pit zips let heat out on steep climbs.",
        "Wash it with a technical cleaner and tumble dry it warm to revive the water repellency.",
        2,
    ),
    Product(
        "ember-down-hoody",
        "Ember Down Hoody",
        "jacket",
        229,
        340,
        "is filled with 800 fill power down",
        "10D nylon shell",
        "It stuffs into its own chest pocket.",
        "Keep it away from campfire sparks; the thin shell melts.",
        2,
    ),
    Product(
        "drizzle-jacket",
        "Drizzle Jacket",
        "jacket",
        119,
        310,
        "has a 10,000 mm waterproof rating",
        "2.5-layer polyester",
        "A packable rain jacket for day hikes.",
        "Close the zips and velcro tabs before washing it.",
        2,
    ),
    Product(
        "granite-mid-gtx",
        "Granite Mid GTX",
        "boot",
        199,
        1160,
        "has a waterproof membrane and a mid-height cuff",
        "nubuck leather upper",
        "The rubber toe cap protects against rocks.",
        "Remove the insoles and let them dry separately after wet hikes.",
        2,
    ),
    Product(
        "scree-low",
        "Scree Low",
        "boot",
        149,
        820,
        "is a low-cut approach shoe with a sticky rubber sole",
        "suede and mesh upper",
        "Lacing runs to the toe for a precise fit on rock.",
        "Clean the mesh with a soft brush and cold water.",
        2,
    ),
    Product(
        "tundra-winter",
        "Tundra Winter",
        "boot",
        249,
        1580,
        "is insulated and rated for snow down to -20 degrees",
        "full-grain leather with 200 g insulation",
        "A gaiter ring holds snow gaiters in place.",
        "Stuff them with newspaper to dry, never next to a stove.",
        2,
    ),
    Product(
        "ember-stove",
        "Ember stove",
        "stove",
        59,
        85,
        "boils one litre of water in about 3.5 minutes",
        "titanium burner head",
        "A piezo igniter lights it without matches.",
        "Keep the burner head clean so the flame stays even.",
        2,
    ),
    Product(
        "basecamp-duo",
        "Basecamp Duo",
        "stove",
        139,
        3900,
        "has two burners of 2.3 kW each",
        "steel body with a wind shield",
        "A car-camping stove that runs on a standard gas bottle.",
        "Check the hose for cracks before each trip.",
        2,
    ),
    Product(
        "lumen-400",
        "Lumen 400",
        "headlamp",
        49,
        78,
        "gives up to 400 lumens",
        "polycarbonate housing rated IPX4",
        "A red light mode keeps your night vision.",
        "Charge it before storage and every three months after.",
        2,
    ),
    Product(
        "lumen-900",
        "Lumen 900",
        "headlamp",
        89,
        112,
        "gives up to 900 lumens",
        "aluminium housing rated IPX7",
        "Reactive lighting dims the beam when you read a map.",
        "Rinse it with fresh water after use at the sea.",
        2,
    ),
    Product(
        "clearflow-squeeze",
        "Clearflow Squeeze",
        "water filter",
        39,
        90,
        "filters up to 1,500 litres",
        "hollow-fibre membrane with 0.1 micron pores",
        "It screws onto standard bottles and soft flasks.",
        "Backflush it with clean water after every trip.",
        2,
    ),
    Product(
        "clearflow-gravity",
        "Clearflow Gravity",
        "water filter",
        99,
        320,
        "filters 4 litres in about 2 minutes",
        "hollow-fibre cartridge and a 4 litre bag",
        "Hang it from a branch and it filters while you set up camp.",
        "Never let the cartridge freeze once it has been wet.",
        2,
    ),
    Product(
        "cirrus-pad",
        "Cirrus pad",
        "sleeping pad",
        159,
        460,
        "has an R-value of 4.2",
        "30D nylon with reflective film",
        "A flat valve inflates it in 12 breaths with the pump sack.",
        "Store it unrolled with the valve open.",
        2,
    ),
    Product(
        "foam-z",
        "Foam Z",
        "sleeping pad",
        49,
        410,
        "has an R-value of 2.0",
        "closed-cell foam",
        "It cannot puncture and doubles as a sit mat.",
        "Wipe it with a damp cloth; no soap needed.",
        2,
    ),
    Product(
        "ridge-poles",
        "Ridge trekking poles",
        "trekking poles",
        79,
        480,
        "adjust from 105 to 135 centimetres",
        "aluminium shafts with cork grips",
        "Flick locks can be tightened without tools.",
        "Take the sections apart to dry after rain.",
        2,
    ),
)

PRODUCT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "weight": (
        "How much does the {name} weigh?",
        "What's the weight of the {name}?",
        "Is the {name} light enough for long hikes? How heavy is it?",
    ),
    "price": (
        "What does the {name} cost?",
        "How much is the {name}?",
        "What's the price of the {name} right now?",
    ),
    "spec": (
        "Tell me the key specs of the {name}.",
        "What are the main specifications of the {name}?",
        "Can you summarise what the {name} offers?",
    ),
    "material": (
        "What is the {name} made of?",
        "Which material is used for the {name}?",
        "What fabric does the {name} use?",
    ),
    "care": (
        "How should I look after my {name}?",
        "Any care tips for the {name}?",
        "How do I maintain the {name} so it lasts?",
    ),
    "warranty": (
        "What warranty comes with the {name}?",
        "If my {name} breaks, how long is it covered?",
        "Is there a guarantee on the {name}?",
    ),
}

COMPARISON_TEMPLATES: tuple[str, ...] = (
    "Which is lighter, the {a} or the {b}?",
    "Should I get the {a} or the {b}? What's the difference?",
    "How do the {a} and the {b} compare?",
)

PERSONAS: tuple[str, ...] = (
    "",
    "",
    "",
    "Hi there! ",
    "Quick question: ",
    "Hello, ",
    "I'm planning a trip to the Ardennes next month. ",
    "I'm new to camping. ",
    "My partner and I are going hiking in the Alps. ",
    "Sorry if this was asked before. ",
)

DOCUMENTS: tuple[Document, ...] = (
    Document(
        "returns",
        "policy",
        "Returns and refunds",
        {
            "window": "Northwind accepts returns of unused gear that is still in its original box up to 45 "
            "days after it was delivered. The money goes back to the card or account you paid with.",
            "used": "Gear that has been used outdoors is not refundable. Faults in materials or workmanship "
            "are handled under the warranty instead.",
            "fee": "Returning an order costs a flat 6 euros, subtracted from the refund. Trailhead members "
            "return for free.",
            "timing": "Once a return reaches the warehouse, the refund is processed within 5 business days; "
            "some banks need up to 3 extra days before it shows on a statement.",
        },
        (
            q(
                "window",
                "Unused gear in its original box can be returned within 45 days of delivery.",
                "I changed my mind about a backpack I ordered. Can I still send it back after three weeks?",
                "What is the deadline for returning unused items?",
            ),
            q(
                "used",
                "No, used gear cannot be refunded; defects are covered by the warranty.",
                "I took the tent on one trip and don't like it. Can I get my money back?",
                "Are used items refundable?",
            ),
            q(
                "fee",
                "It costs a flat 6 euros, taken from the refund, unless you are a Trailhead member.",
                "Is sending a parcel back free?",
                "How much do you charge for a return?",
            ),
            q(
                "timing",
                "Within 5 business days after the warehouse receives it, plus up to 3 days at some banks.",
                "I posted my return on Monday. How long until the money is back?",
                "How long does a refund take to arrive?",
            ),
        ),
    ),
    Document(
        "exchanges",
        "policy",
        "Size and colour exchanges",
        {
            "free": "Swapping an item for another size or colour costs nothing. The replacement leaves the "
            "warehouse as soon as the carrier scans the parcel you sent back.",
            "stock": "If the requested size is out of stock, the exchange is turned into a refund and you "
            "get an email telling you so.",
        },
        (
            q(
                "free",
                "Yes, exchanges for another size or colour are free and ship once your parcel is scanned.",
                "My boots are half a size too small. Can I swap them?",
                "Do exchanges cost anything?",
            ),
            q(
                "stock",
                "The exchange becomes a refund and you are told by email.",
                "What happens if the size I want for my exchange is sold out?",
            ),
        ),
    ),
    Document(
        "shipping",
        "policy",
        "Shipping",
        {
            "standard": "Standard delivery inside the EU arrives in 3 to 6 business days. Orders worth more "
            "than 80 euros ship free; smaller orders pay 5 euros.",
            "express": "Express delivery arrives in 1 to 2 business days for 12 euros. Orders placed before "
            "14:00 on a weekday leave the warehouse the same day.",
            "outside-eu": "Northwind ships to the United Kingdom, Norway and Switzerland in 5 to 8 business "
            "days for 15 euros. Import duties and taxes are paid by the customer on delivery.",
            "tracking": "A tracking link is emailed when the parcel leaves the warehouse and also appears in "
            "the order history of your account.",
        },
        (
            q(
                "standard",
                "3 to 6 business days within the EU; free above 80 euros, otherwise 5 euros.",
                "How long will my order take to reach Belgium?",
                "What does standard delivery cost?",
            ),
            q(
                "express",
                "Express takes 1 to 2 business days and costs 12 euros.",
                "I need a sleeping bag by Friday. Do you have a faster shipping option?",
                "How much is express shipping?",
            ),
            q(
                "express",
                "Yes, if it is placed before 14:00 on a weekday.",
                "If I order this morning, will it ship today?",
            ),
            q(
                "outside-eu",
                "Yes, in 5 to 8 business days for 15 euros; you pay import duties on delivery.",
                "Do you deliver to Switzerland?",
                "I live in the UK. Will I have to pay customs?",
            ),
            q(
                "tracking",
                "You get a tracking link by email when it ships, and it is in your order history.",
                "Where can I find my tracking number?",
                "How do I track my parcel?",
            ),
        ),
    ),
    Document(
        "warranty",
        "policy",
        "Warranty",
        {
            "terms": "Every Northwind product is guaranteed for two years against faults in materials and "
            "workmanship. Tents are guaranteed for three years. Wear and tear, accidents and "
            "misuse are not covered.",
            "claim": "Start a claim with the support form: add your order number, a few photos of the fault "
            "and a description. Items from partner shops also need the receipt.",
            "outcome": "Approved claims are repaired first; when a repair is not possible the item is "
            "replaced, or refunded if the model is discontinued.",
        },
        (
            q(
                "terms",
                "Two years against material and workmanship faults, three years for tents.",
                "How long is Northwind gear guaranteed?",
                "Is my backpack still covered after 18 months?",
            ),
            q(
                "terms",
                "No, accidents and normal wear are not covered by the warranty.",
                "I tore my jacket on a fence. Is that covered?",
            ),
            q(
                "claim",
                "Use the support form with your order number, photos and a description, plus the receipt "
                "for partner-shop items.",
                "The zip on my sleeping bag broke. How do I make a claim?",
                "What should I send for a guarantee claim?",
            ),
            q(
                "outcome",
                "It is repaired first, replaced if repair is impossible, or refunded if discontinued.",
                "Will I get a new item or a repair if my claim is accepted?",
            ),
        ),
    ),
    Document(
        "payments",
        "policy",
        "Payments",
        {
            "methods": "The web shop takes Visa, Mastercard, debit cards, PayPal and bank transfer. "
            "Customers in the Netherlands and Germany can also pay by invoice within 14 days.",
            "instalments": "Orders above 300 euros can be split into three interest-free monthly payments at "
            "checkout.",
            "currency": "Prices are shown and charged in euros. Card issuers may add their own fee for "
            "payments in a foreign currency.",
        },
        (
            q(
                "methods",
                "Visa, Mastercard, debit cards, PayPal or bank transfer; paying by invoice is offered in the "
                "Netherlands and Germany.",
                "Can I pay with PayPal?",
                "Which ways of paying do you offer?",
            ),
            q(
                "instalments",
                "Yes, orders above 300 euros can be paid in three interest-free monthly parts.",
                "Can I pay for the Fjell Tunnel 4 in instalments?",
                "Do you offer payment in instalments?",
            ),
            q(
                "currency",
                "Everything is charged in euros; your card issuer may add a foreign currency fee.",
                "I'm in Norway. Will I be charged in kroner?",
            ),
        ),
    ),
    Document(
        "trailhead",
        "policy",
        "Trailhead loyalty program",
        {
            "points": "Trailhead is free to join. Members collect 2 points for each euro they spend, and "
            "every 100 points turn into a 5 euro voucher.",
            "perks": "Members also get free returns, early access to the spring sale and one free tent "
            "rental per year.",
            "expiry": "Points stay valid for 24 months after they are earned. Vouchers expire one year after "
            "they are issued.",
        },
        (
            q(
                "points",
                "Joining is free; you earn 2 points per euro and 100 points become a 5 euro voucher.",
                "How does the Trailhead program work?",
                "How do I earn loyalty points?",
            ),
            q(
                "perks",
                "Free returns, early access to the spring sale and one free tent rental a year.",
                "What do I get as a Trailhead member?",
                "Are there any perks for members besides points?",
            ),
            q(
                "expiry",
                "Points last 24 months; vouchers expire one year after being issued.",
                "Do my points expire?",
                "How long is a loyalty voucher valid?",
            ),
        ),
    ),
    Document(
        "gift-cards",
        "policy",
        "Gift cards",
        {
            "validity": "A Northwind gift card can be spent for three years from the day it was bought, in "
            "the web shop and in both stores.",
            "balance": "The remaining balance is shown on the receipt and can be checked on the gift card "
            "page by entering the card number. Gift cards cannot be exchanged for cash.",
        },
        (
            q(
                "validity",
                "Three years from purchase, online and in the stores.",
                "My aunt gave me a gift card two years ago. Can I still use it?",
            ),
            q(
                "balance",
                "Enter the card number on the gift card page; the balance is also on your receipt.",
                "How do I check what's left on my gift card?",
                "Can I get cash for my gift card balance?",
            ),
        ),
    ),
    Document(
        "orders",
        "policy",
        "Changing and cancelling orders",
        {
            "cancel": "An order can be cancelled in your account as long as its status is 'processing' or "
            "'paid'. Once it shows 'packed', cancelling is no longer possible and you can return "
            "it after delivery instead.",
            "address": "You can edit the delivery address yourself until the order is packed. After that, "
            "ask the carrier to redirect the parcel using the tracking link.",
            "add-items": "Items cannot be added to an order that has been placed; place a second order. "
            "Two orders on the same day ship together when possible.",
        },
        (
            q(
                "cancel",
                "Yes, while it is 'processing' or 'paid'; once 'packed' you have to return it instead.",
                "I ordered the wrong stove. Can I still cancel?",
                "How do I cancel my order?",
            ),
            q(
                "address",
                "Edit it in your account until the order is packed; after that, ask the carrier.",
                "I moved last week. Can I update where my order goes?",
            ),
            q(
                "add-items",
                "No, place a second order; same-day orders ship together when possible.",
                "Can I add a headlamp to the order I placed an hour ago?",
            ),
        ),
    ),
    Document(
        "price-adjustment",
        "policy",
        "Price adjustments",
        {
            "drop": "If Northwind lowers the price of an item within 14 days after you bought it, support "
            "refunds the difference on request. Prices from other retailers are not matched.",
        },
        (
            q(
                "drop",
                "Yes, within 14 days of purchase support refunds the difference if Northwind's price drops.",
                "The jacket I bought last week is now on sale. Can I get the difference back?",
                "Will you match a lower price from another shop?",
            ),
        ),
    ),
    Document(
        "stores",
        "policy",
        "Stores",
        {
            "hours": "The Utrecht store opens Monday to Saturday 10:00 to 18:00 and Sunday 12:00 to 17:00. "
            "The Ghent store opens Tuesday to Saturday 9:30 to 18:30 and is closed Sunday and Monday.",
            "collect": "Click and collect is free: orders placed before noon are ready for pickup in Utrecht "
            "or Ghent the next day, and are held for 10 days.",
            "fitting": "Both stores offer free boot fitting with a foot scan; booking a slot online avoids "
            "waiting on Saturdays.",
        },
        (
            q(
                "hours",
                "Tuesday to Saturday 9:30-18:30; closed Sunday and Monday.",
                "When is the Ghent store open?",
                "Is the Ghent shop open on Mondays?",
            ),
            q("hours", "Yes, from 12:00 to 17:00.", "Can I visit the Utrecht store on a Sunday?"),
            q(
                "collect",
                "It is free; orders before noon are ready the next day and held for 10 days.",
                "Can I pick up my order in a store?",
                "How long will you keep my click and collect order?",
            ),
            q("fitting", None, "Do you help with choosing the right boot size in the shop?"),
        ),
    ),
    Document(
        "rentals",
        "policy",
        "Gear rental",
        {
            "what": "The Utrecht and Ghent stores rent out tents, stoves, sleeping bags and backpacks by the "
            "weekend or by the week. A 50 euro deposit is taken when you pick the gear up.",
            "prices": "A weekend rental costs 25 euros for a tent and 10 euros for a stove, sleeping bag or "
            "backpack. A week costs twice the weekend price.",
            "damage": "Normal dirt is fine. Damage beyond normal use is repaired at cost and deducted from "
            "the deposit.",
        },
        (
            q(
                "what",
                "You can rent tents, stoves, sleeping bags and backpacks for a weekend or a week; a 50 euro "
                "deposit is taken.",
                "What kind of gear can I rent?",
                "Is there a deposit for renting a tent?",
            ),
            q(
                "prices",
                "25 euros for a tent for a weekend; a week is twice that, 50 euros.",
                "How much does it cost to rent a tent for a week?",
                "What's the weekend price for renting a stove?",
            ),
            q(
                "damage",
                "Damage beyond normal use is repaired at cost and taken from the deposit.",
                "What if I return a rented tent with a hole in it?",
            ),
        ),
    ),
    Document(
        "repairs",
        "policy",
        "Repair workshop",
        {
            "services": "The workshop in Utrecht replaces zips, patches torn fabric, re-tapes seams and "
            "replaces tent poles. A zip replacement costs 15 euros.",
            "turnaround": "Most repairs take about two weeks. Items can be handed in at either store or sent "
            "by post with the repair form.",
        },
        (
            q(
                "services",
                "Zips, fabric patches, seam taping and tent poles; a zip costs 15 euros.",
                "Can you fix a broken zip on my jacket?",
                "What kinds of repairs do you do?",
            ),
            q(
                "turnaround",
                "About two weeks; hand it in at a store or post it with the repair form.",
                "How long does a repair usually take?",
                "Can I send my tent for repair by post?",
            ),
        ),
    ),
    Document(
        "discounts",
        "policy",
        "Discounts",
        {
            "students": "Students get 10 percent off full-price items after verifying a valid student card, "
            "online or at the till.",
            "groups": "Scout groups and clubs ordering for more than 10 people get 15 percent off; contact "
            "the group sales team for a quote.",
            "stacking": "Discounts cannot be combined with each other, but loyalty vouchers can be used on "
            "top of any discount.",
        },
        (
            q(
                "students",
                "10 percent off full-price items once your student card is verified.",
                "Do students get a discount?",
            ),
            q(
                "groups",
                "Groups of more than 10 get 15 percent off via the group sales team.",
                "I'm buying sleeping bags for my scout troop of 14. Is there a discount?",
                "Do you offer discounts for clubs?",
            ),
            q(
                "stacking",
                "Discounts do not stack, but a loyalty voucher can be added on top.",
                "Can I use my student discount together with a voucher?",
            ),
        ),
    ),
    Document(
        "recycling",
        "policy",
        "Gear take-back",
        {
            "take-back": "Worn-out Northwind gear can be dropped off in either store for recycling or "
            "resale. Every item handed in earns a 10 euro voucher, up to three per year.",
        },
        (
            q(
                "take-back",
                "Drop it at a store; each item earns a 10 euro voucher, up to three a year.",
                "What can I do with my old worn-out tent?",
                "Do you take back old gear?",
            ),
        ),
    ),
    Document(
        "privacy",
        "policy",
        "Privacy",
        {
            "deletion": "Ask for your personal data to be erased through the privacy form. Erasure is done "
            "within 30 days; invoices are kept as long as tax law requires.",
            "newsletter": "The newsletter can be stopped with the link at the foot of each email or in the "
            "account settings under 'Communication'.",
        },
        (
            q(
                "deletion",
                "Fill in the privacy form; erasure takes up to 30 days, but invoices stay as tax law "
                "requires.",
                "Please remove all my data from your systems. How?",
            ),
            q(
                "newsletter",
                "Click the link at the foot of any newsletter or change 'Communication' in settings.",
                "How can I stop getting your emails?",
            ),
        ),
    ),
    Document(
        "app-account",
        "app",
        "Trailhead app: account and sign-in",
        {
            "signin": "The Trailhead app uses the same email and password as the web shop. Signing in with "
            "Apple or Google is also supported.",
            "reset": "To reset a password, tap 'Forgot password' on the sign-in screen. The reset link in "
            "the email is valid for 30 minutes.",
            "2fa": "Two-step verification can be turned on under Settings > Security. Codes come from an "
            "authenticator app; SMS codes are not offered.",
        },
        (
            q(
                "signin",
                "Use your web shop email and password, or sign in with Apple or Google.",
                "Do I need a separate account for the app?",
                "Can I log into the Trailhead app with Google?",
            ),
            q(
                "reset",
                "Tap 'Forgot password'; the emailed link works for 30 minutes.",
                "I forgot my password. What now?",
                "My password reset link doesn't work anymore. Why?",
            ),
            q(
                "2fa",
                "Turn it on under Settings > Security with an authenticator app; SMS is not offered.",
                "How do I enable two-factor authentication?",
                "Can I get login codes by text message?",
            ),
        ),
    ),
    Document(
        "app-plus",
        "app",
        "Trailhead Plus subscription",
        {
            "price": "Trailhead Plus costs 4.99 euros a month or 39 euros a year and adds offline maps, "
            "weather alerts and route sharing to the free app.",
            "trial": "New subscribers get a 14 day free trial. Cancelling before it ends means you are never "
            "charged.",
            "cancel": "Cancel Plus in the app store you subscribed through. Plus stays active until the end "
            "of the period you already paid for; partial periods are not refunded.",
        },
        (
            q(
                "price",
                "4.99 euros a month or 39 euros a year, for offline maps, weather alerts and route sharing.",
                "How much is Trailhead Plus?",
                "What extra features does the paid plan have?",
            ),
            q(
                "trial",
                "Yes, 14 days free; cancel before it ends and you pay nothing.",
                "Is there a free trial of Plus?",
            ),
            q(
                "cancel",
                "Cancel in the app store you subscribed through; it stays active until the paid period ends.",
                "How do I cancel my Plus subscription?",
                "Will I get money back if I cancel Plus halfway through the year?",
            ),
        ),
    ),
    Document(
        "app-maps",
        "app",
        "Trailhead app: offline maps and routes",
        {
            "offline": "Plus members can download map regions for offline use from the map screen: tap the "
            "download icon and draw a box. Each region can be up to 2,500 square kilometres.",
            "storage": "Downloaded regions are kept for 90 days and updated automatically on Wi-Fi. They can "
            "be removed under Settings > Storage.",
            "gpx": "Routes can be imported and exported as GPX files from the route menu.",
        },
        (
            q(
                "offline",
                "With Plus, tap the download icon on the map and draw a box of up to 2,500 square km.",
                "How do I save maps for a hike without signal?",
                "How big an area can I download offline?",
            ),
            q(
                "storage",
                "They are kept for 90 days, update on Wi-Fi and can be removed under Settings > Storage.",
                "The offline maps take up too much space on my phone. How do I delete them?",
            ),
            q(
                "gpx",
                "Yes, GPX import and export are in the route menu.",
                "Can I import a GPX route into the app?",
            ),
        ),
    ),
    Document(
        "app-sync",
        "app",
        "Trailhead app: watches and syncing",
        {
            "watches": "The app syncs activities with Garmin, Suunto and Coros watches once the account is "
            "linked under Settings > Connected devices.",
            "sync-issue": "If activities stop syncing, unlink and relink the watch, make sure background app "
            "refresh is allowed, and update the app to the latest version.",
        },
        (
            q(
                "watches",
                "Garmin, Suunto and Coros, linked under Settings > Connected devices.",
                "Does the app work with my Garmin watch?",
                "Which sports watches can I connect?",
            ),
            q(
                "sync-issue",
                "Unlink and relink the watch, allow background refresh and update the app.",
                "My hikes from the watch are not showing up in the app. How do I fix it?",
                "Watch sync stopped working yesterday. Any ideas?",
            ),
        ),
    ),
    Document(
        "app-orders",
        "app",
        "Trailhead app: orders and notifications",
        {
            "orders": "All web and store purchases linked to your account appear under Profile > Orders, "
            "with invoices to download as PDF.",
            "notifications": "Delivery and sale notifications can be switched on or off separately under "
            "Settings > Notifications.",
        },
        (
            q(
                "orders",
                "Under Profile > Orders, where invoices can be downloaded as PDF.",
                "Where can I download an invoice for my order?",
                "Can I see my store purchases in the app?",
            ),
            q(
                "notifications",
                "Switch them off under Settings > Notifications; delivery and sale alerts are separate.",
                "How do I turn off sale notifications but keep delivery updates?",
            ),
        ),
    ),
    Document(
        "stove-ignition",
        "troubleshooting",
        "Stove does not light",
        {
            "gas": "If a canister stove will not light, first check that the canister is screwed on fully "
            "and not empty; shake it to feel for liquid gas.",
            "cold": "Below about 0 degrees, isobutane-propane canisters lose pressure. Keep the canister "
            "warm in a jacket pocket or sleeping bag before cooking.",
            "igniter": "If the piezo igniter clicks without a spark, clean the electrode tip with a dry "
            "cloth and check its gap to the burner is about 4 millimetres; light it with a match "
            "meanwhile.",
        },
        (
            q(
                "gas",
                "Check the canister is screwed on fully and still has gas by shaking it.",
                "My Ember stove won't light at all. What should I check?",
            ),
            q(
                "cold",
                "Cold canisters lose pressure; warm the canister in a pocket or your sleeping bag first.",
                "The flame is really weak on frosty mornings. Why?",
                "How do I use my gas stove in freezing weather?",
            ),
            q(
                "igniter",
                "Clean the electrode tip, set a gap of about 4 mm, and use a match meanwhile.",
                "The igniter clicks but there's no spark. How do I fix it?",
            ),
        ),
    ),
    Document(
        "headlamp-issues",
        "troubleshooting",
        "Headlamp problems",
        {
            "flicker": "A flickering headlamp usually has a dirty contact. Wipe the battery contacts with a "
            "dry cloth and charge the battery fully before testing again.",
            "charge": "The charging light blinks red when the battery is too cold to charge. Let the lamp "
            "warm to room temperature before plugging it in.",
            "lockout": "Hold the power button for 4 seconds to lock or unlock the lamp so it cannot turn on "
            "inside a pack.",
        },
        (
            q(
                "flicker",
                "Wipe the battery contacts with a dry cloth and fully charge it.",
                "My Lumen 400 keeps flickering. What's wrong?",
            ),
            q(
                "charge",
                "The battery is too cold; let the lamp reach room temperature before charging.",
                "Why does the charging light blink red?",
            ),
            q(
                "lockout",
                "Hold the power button for 4 seconds to lock it.",
                "My headlamp turns on in my backpack and drains the battery. How do I stop that?",
                "How do I unlock my headlamp?",
            ),
        ),
    ),
    Document(
        "tent-issues",
        "troubleshooting",
        "Tent problems",
        {
            "leak": "Water coming in along a seam usually means the seam tape has lifted. Dry the tent, "
            "then apply seam sealer to the outside of the seam and let it cure for 24 hours.",
            "condensation": "Moisture on the inside of the fly is condensation, not a leak. Open both vents, "
            "keep the fly tensioned away from the inner, and pitch away from rivers.",
            "pole": "A cracked pole section can be splinted with the repair sleeve in the pole bag until it "
            "is replaced; the workshop sells single sections.",
        },
        (
            q(
                "leak",
                "The seam tape has likely lifted; dry the tent, seal the seam outside and let it cure 24 "
                "hours.",
                "My tent leaks along a seam. What can I do?",
            ),
            q(
                "condensation",
                "It is condensation: open the vents, keep the fly tight and pitch away from rivers.",
                "I woke up with wet walls inside my tent even though it didn't rain. Is it leaking?",
            ),
            q(
                "pole",
                "Splint it with the repair sleeve from the pole bag; the workshop sells single sections.",
                "One of my tent poles cracked. What now?",
                "Can I buy a single replacement pole section?",
            ),
        ),
    ),
    Document(
        "filter-issues",
        "troubleshooting",
        "Water filter problems",
        {
            "slow": "When water flows slowly through a hollow-fibre filter, backflush it with clean water "
            "using the syringe until the flow returns.",
            "frozen": "A filter that has frozen after use may have cracked fibres and must be replaced, "
            "since it can no longer be trusted to remove bacteria.",
        },
        (
            q(
                "slow",
                "Backflush it with clean water using the syringe until the flow returns.",
                "My Clearflow filter has become really slow. How do I fix it?",
            ),
            q(
                "frozen",
                "Replace it: freezing can crack the fibres, so it is no longer safe.",
                "I left my wet water filter in the car overnight and it froze. Is it still OK?",
            ),
        ),
    ),
    Document(
        "pad-issues",
        "troubleshooting",
        "Sleeping pad losing air",
        {
            "find": "To find a slow leak, inflate the pad and press it under water in a bath; a line of "
            "bubbles marks the hole. Check the valve first.",
            "patch": "Clean and dry the spot, then apply a patch from the repair kit and leave it under "
            "weight for 12 hours before inflating.",
        },
        (
            q(
                "find",
                "Inflate it, hold it under water and look for bubbles, checking the valve first.",
                "My Cirrus pad is flat by morning. How do I find the leak?",
            ),
            q(
                "patch",
                "Clean and dry it, apply a kit patch and weigh it down for 12 hours.",
                "How do I patch a hole in an inflatable sleeping pad?",
            ),
        ),
    ),
    Document(
        "jacket-issues",
        "troubleshooting",
        "Rain jacket wetting out",
        {
            "dwr": "When rain no longer beads on a jacket, the water-repellent finish is worn or dirty. Wash "
            "the jacket with a technical cleaner, then tumble dry it warm for 20 minutes to "
            "reactivate the finish.",
            "reproof": "If beading does not return after washing and drying, apply a spray-on reproofer to "
            "the outside and dry it again.",
        },
        (
            q(
                "dwr",
                "Wash it with a technical cleaner and tumble dry it warm for 20 minutes.",
                "Rain soaks into the outside of my Gale Shell now. What should I do?",
                "Why doesn't water bead on my rain jacket anymore?",
            ),
            q(
                "reproof",
                "Apply a spray-on reproofer to the outside and dry it again.",
                "I washed my jacket but it still doesn't repel water. Next step?",
            ),
        ),
    ),
    Document(
        "boot-issues",
        "troubleshooting",
        "Boot fit problems",
        {
            "blisters": "Heel blisters usually mean the heel lifts. Use the heel-lock lacing shown on the "
            "boot tag and wear merino socks that fit snugly.",
            "break-in": "Leather boots need about 20 to 30 kilometres of easy walking to break in; wear them "
            "around the house and on short walks first.",
        },
        (
            q(
                "blisters",
                "Your heel is lifting: use heel-lock lacing and snug merino socks.",
                "I get blisters on my heels in my new boots. Help?",
            ),
            q(
                "break-in",
                "About 20 to 30 km of easy walking; start at home and on short walks.",
                "How long does it take to break in leather boots?",
            ),
        ),
    ),
)
