#!/usr/bin/env python3
"""Writes the demo sales database (a small trading company) that mcpgate-server-sqlite serves.

Usage: python3 scripts/demo-db.py OUT.db

Deterministic: the only randomness is a PRNG with a fixed seed, so two runs give the same rows
(and the same file). The file is written next to OUT.db under a temporary name and renamed over
it, so a server reading OUT.db never sees a half-written database.
"""

import datetime
import os
import random
import sqlite3
import sys
import tempfile

SEED = 20220101
FIRST_DAY = datetime.date(2022, 1, 1)
LAST_DAY = datetime.date(2025, 12, 31)
# Orders per year: the business grows every year.
ORDERS_PER_YEAR = {2022: 560, 2023: 680, 2024: 790, 2025: 970}
# List prices are today's (2025); earlier years sold at lower prices.
PRICE_INDEX = {2022: 0.91, 2023: 0.94, 2024: 0.97, 2025: 1.0}
# Some months sell more than others (a December peak, a summer dip).
MONTH_WEIGHT = [0.8, 0.8, 0.95, 1.0, 1.0, 0.9, 0.75, 0.75, 1.05, 1.1, 1.2, 1.45]

SCHEMA = """
CREATE TABLE categories (
    category_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT
);
CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories,
    unit_price REAL NOT NULL,
    discontinued INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    company_name TEXT NOT NULL,
    contact_name TEXT,
    city TEXT,
    country TEXT NOT NULL
);
CREATE TABLE employees (
    employee_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    title TEXT NOT NULL,
    hire_date TEXT NOT NULL,
    salary REAL NOT NULL,
    reports_to INTEGER REFERENCES employees
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers,
    employee_id INTEGER NOT NULL REFERENCES employees,
    order_date TEXT NOT NULL,
    shipped_date TEXT,
    ship_country TEXT NOT NULL
);
CREATE TABLE order_lines (
    order_id INTEGER NOT NULL REFERENCES orders,
    product_id INTEGER NOT NULL REFERENCES products,
    unit_price REAL NOT NULL,
    quantity INTEGER NOT NULL,
    discount REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX products_by_category ON products(category_id);
CREATE INDEX customers_by_country ON customers(country);
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE INDEX orders_by_employee ON orders(employee_id);
CREATE INDEX orders_by_date ON orders(order_date);
CREATE INDEX order_lines_by_product ON order_lines(product_id);
"""

CATEGORIES = [
    ("Beverages", "Coffee, tea, juices, sodas and brewed drinks"),
    ("Condiments", "Sauces, spreads, dressings and seasonings"),
    ("Confections", "Chocolate, biscuits, candy and sweet baked goods"),
    ("Dairy Products", "Cheeses, butter and cultured milk"),
    ("Grains & Cereals", "Pasta, rice, flour, bread and breakfast cereals"),
    ("Meat & Poultry", "Cured, smoked and prepared meats"),
    ("Produce", "Dried fruit, nuts, preserved vegetables"),
    ("Seafood", "Canned, smoked and dried fish and shellfish"),
]

# (name, category index into CATEGORIES, list price, discontinued)
PRODUCTS = [
    ("Highland Breakfast Tea", 0, 14.50, 0),
    ("Cold Brew Coffee Concentrate", 0, 21.00, 0),
    ("Sparkling Elderflower Press", 0, 9.75, 0),
    ("Blood Orange Juice", 0, 6.40, 0),
    ("Smoky Lapsang Leaves", 0, 27.80, 0),
    ("Ginger Root Beer", 0, 8.20, 1),
    ("Espresso Beans Dark Roast", 0, 34.00, 0),
    ("Yerba Mate Loose Leaf", 0, 17.60, 0),
    ("Harbor Pale Ale", 0, 15.90, 0),
    ("Fermented Chili Paste", 1, 11.25, 0),
    ("Aged Balsamic Vinegar", 1, 42.00, 0),
    ("Wholegrain Mustard", 1, 7.90, 0),
    ("Smoked Paprika Tin", 1, 6.95, 0),
    ("Black Garlic Purée", 1, 18.40, 0),
    ("Sea Salt Flakes", 1, 5.50, 0),
    ("Tamarind Chutney", 1, 9.30, 1),
    ("Dark Chocolate Bar 72%", 2, 4.80, 0),
    ("Salted Caramel Truffles", 2, 26.50, 0),
    ("Almond Butter Biscuits", 2, 12.20, 0),
    ("Licorice Wheels", 2, 5.10, 0),
    ("Marzipan Loaf", 2, 16.75, 0),
    ("Honey Nougat", 2, 13.40, 0),
    ("Gingerbread Hearts", 2, 9.60, 1),
    ("Maple Fudge Squares", 2, 11.90, 0),
    ("Alpine Mountain Cheese", 3, 38.00, 0),
    ("Goat Cheese Log", 3, 14.20, 0),
    ("Cultured Butter", 3, 8.60, 0),
    ("Blue Vein Wedge", 3, 29.50, 0),
    ("Smoked Mozzarella", 3, 12.80, 0),
    ("Sheep Milk Feta", 3, 16.10, 0),
    ("Aged Gouda Wheel", 3, 64.00, 0),
    ("Bronze-Cut Spaghetti", 4, 4.90, 0),
    ("Arborio Rice", 4, 7.30, 0),
    ("Spelt Flour", 4, 5.80, 0),
    ("Rye Crispbread", 4, 6.20, 0),
    ("Toasted Muesli", 4, 10.40, 0),
    ("Buckwheat Noodles", 4, 8.90, 1),
    ("Pearl Couscous", 4, 6.70, 0),
    ("Cured Mountain Ham", 5, 48.00, 0),
    ("Smoked Duck Breast", 5, 36.50, 0),
    ("Spiced Beef Jerky", 5, 19.90, 0),
    ("Fennel Salami", 5, 23.40, 0),
    ("Venison Pâté", 5, 28.70, 1),
    ("Chicken Liver Mousse", 5, 15.30, 0),
    ("Sun-Dried Tomatoes", 6, 8.40, 0),
    ("Medjool Dates", 6, 17.20, 0),
    ("Roasted Hazelnuts", 6, 13.80, 0),
    ("Pickled Artichoke Hearts", 6, 11.60, 0),
    ("Dried Wild Mushrooms", 6, 31.00, 0),
    ("Candied Orange Peel", 6, 9.90, 0),
    ("Pistachio Kernels", 6, 24.60, 0),
    ("Smoked Salmon Side", 7, 52.00, 0),
    ("Anchovy Fillets in Oil", 7, 9.20, 0),
    ("Pickled Herring", 7, 10.70, 0),
    ("Tuna Belly Jar", 7, 22.30, 0),
    ("Dried Scallops", 7, 58.00, 0),
    ("Crab Meat Tin", 7, 27.40, 1),
    ("Sardines in Lemon Oil", 7, 5.90, 0),
    ("Squid Ink", 7, 12.10, 0),
    ("Cod Roe Spread", 7, 7.80, 0),
]

# Countries with a few cities each and a weight (how many customers they get).
COUNTRIES = [
    ("USA", ["Seattle", "Portland", "Boston", "Austin", "Chicago"], 10),
    ("Germany", ["Berlin", "Hamburg", "Munich", "Cologne"], 9),
    ("France", ["Paris", "Lyon", "Marseille", "Nantes"], 7),
    ("United Kingdom", ["London", "Manchester", "Edinburgh"], 7),
    ("Brazil", ["São Paulo", "Rio de Janeiro", "Curitiba"], 6),
    ("Spain", ["Madrid", "Barcelona", "Valencia"], 5),
    ("Italy", ["Milan", "Turin", "Bologna"], 5),
    ("Canada", ["Toronto", "Vancouver", "Montréal"], 5),
    ("Mexico", ["México D.F.", "Guadalajara", "Monterrey"], 4),
    ("Sweden", ["Stockholm", "Göteborg", "Malmö"], 4),
    ("Japan", ["Tokyo", "Osaka"], 4),
    ("Australia", ["Sydney", "Melbourne"], 4),
    ("Netherlands", ["Amsterdam", "Rotterdam"], 3),
    ("Belgium", ["Brussels", "Antwerp"], 3),
    ("Switzerland", ["Zürich", "Geneva"], 3),
    ("Austria", ["Vienna", "Graz"], 3),
    ("Denmark", ["Copenhagen", "Aarhus"], 2),
    ("Ireland", ["Dublin", "Cork"], 2),
    ("Portugal", ["Lisbon", "Porto"], 2),
    ("Norway", ["Oslo", "Bergen"], 2),
    ("Argentina", ["Buenos Aires"], 2),
]

COMPANY_FIRST = [
    "Alder", "Bluewater", "Copper", "Driftwood", "Ember", "Fjord", "Golden", "Harbor",
    "Ironbark", "Juniper", "Kestrel", "Lantern", "Meadow", "Northwind", "Oakridge", "Pioneer",
    "Quayside", "Riverside", "Saffron", "Tidewater", "Upland", "Valley", "Willow", "Yarrow",
    "Zephyr", "Amber", "Birch", "Cedar", "Dune", "Evergreen",
]
COMPANY_SECOND = [
    "Provisions", "Market", "Delicatessen", "Grocers", "Trading", "Foods", "Pantry", "Larder",
    "Emporium", "Store", "Wholesale", "Kitchen", "Supply", "Fine Foods", "Imports",
]
FIRST_NAMES = [
    "Ana", "Bruno", "Chloé", "Daniel", "Elif", "Felix", "Greta", "Hiro", "Ines", "Jonas",
    "Kaja", "Liam", "Marta", "Nils", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tove",
    "Ugo", "Vera", "Wim", "Ximena", "Yuki", "Zoë",
]
LAST_NAMES = [
    "Almeida", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ito",
    "Jansen", "Kowalski", "Lindqvist", "Moreau", "Novak", "O'Brien", "Petrov", "Rossi",
    "Schmidt", "Tanaka", "Urquhart", "Vargas", "Weber", "Young", "Zimmermann",
]

# (first, last, title, hire date, salary, reports to (employee_id) or None)
EMPLOYEES = [
    ("Margaret", "Holloway", "Chief Executive Officer", "2014-03-01", 185000.00, None),
    ("Andrew", "Kaplan", "Vice President, Sales", "2015-08-14", 142000.00, 1),
    ("Sofia", "Lindgren", "Sales Manager", "2017-01-09", 98500.00, 2),
    ("Tomás", "Ferreira", "Sales Representative", "2018-05-21", 64200.00, 3),
    ("Nadia", "Petrova", "Sales Representative", "2019-02-04", 61800.00, 3),
    ("James", "Whitaker", "Sales Representative", "2020-09-28", 58900.00, 3),
    ("Aiko", "Mori", "Sales Representative", "2021-11-15", 57300.00, 3),
    ("Lucas", "Brennan", "Inside Sales Coordinator", "2019-06-03", 52400.00, 2),
    ("Helena", "Vogel", "Sales Representative", "2023-04-17", 55600.00, 3),
]
# Employees who take orders, with a weight; the last one was hired in 2023.
SELLERS = [(2, 1), (3, 3), (4, 6), (5, 6), (6, 5), (7, 5), (8, 2), (9, 5)]
DISCOUNTS = [0.0] * 14 + [0.05, 0.05, 0.1, 0.1, 0.15, 0.2, 0.25]


def customers(rng):
    """About 90 customers over the countries, with unique five-letter ids."""
    rows = []
    used_names = set()
    used_ids = set()
    for country, cities, count in COUNTRIES:
        for _ in range(count):
            while True:
                name = f"{rng.choice(COMPANY_FIRST)} {rng.choice(COMPANY_SECOND)}"
                if name not in used_names:
                    break
            used_names.add(name)
            letters = "".join(c for c in name.upper() if c.isalpha())
            customer_id = (letters[:3] + letters[-2:])[:5]
            suffix = 0
            while customer_id in used_ids:
                suffix += 1
                customer_id = letters[:4] + str(suffix)
            used_ids.add(customer_id)
            contact = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            rows.append((customer_id, name, contact, rng.choice(cities), country))
    return rows


def days_of(year):
    """Every day of `year` with its month's weight."""
    day = datetime.date(year, 1, 1)
    days, weights = [], []
    while day.year == year:
        days.append(day)
        weights.append(MONTH_WEIGHT[day.month - 1])
        day += datetime.timedelta(days=1)
    return days, weights


def orders(rng, customer_rows):
    """Orders and their lines, 2022-01-01 .. 2025-12-31."""
    # A few big customers buy much more often than the rest.
    customer_weights = [rng.choice([1, 1, 1, 2, 2, 3, 5]) for _ in customer_rows]
    order_rows, line_rows = [], []
    order_id = 10000
    for year, count in ORDERS_PER_YEAR.items():
        days, weights = days_of(year)
        dates = sorted(rng.choices(days, weights=weights, k=count))
        sellers = [s for s in SELLERS if year >= 2023 or s[0] != 9]
        for order_date in dates:
            order_id += 1
            customer = rng.choices(customer_rows, weights=customer_weights)[0]
            employee_id = rng.choices([s[0] for s in sellers], weights=[s[1] for s in sellers])[0]
            shipped = order_date + datetime.timedelta(days=rng.randint(1, 12))
            shipped_date = shipped.isoformat() if shipped <= LAST_DAY else None
            if rng.random() < 0.01:
                shipped_date = None  # lost in the warehouse
            # Mostly shipped to the customer's country, now and then to another branch.
            ship_country = customer[4] if rng.random() < 0.95 else rng.choice(COUNTRIES)[0]
            order_rows.append(
                (order_id, customer[0], employee_id, order_date.isoformat(), shipped_date, ship_country)
            )
            n_lines = rng.choices([1, 2, 3, 4, 5], weights=[25, 30, 22, 14, 9])[0]
            lines_before = len(line_rows)
            for product_index in sorted(rng.sample(range(len(PRODUCTS)), n_lines)):
                _, _, list_price, discontinued = PRODUCTS[product_index]
                if discontinued and year == 2025:
                    continue
                price = round(list_price * PRICE_INDEX[year], 2)
                quantity = rng.choice([1, 2, 3, 5, 6, 10, 12, 15, 20, 24, 30, 40, 50, 60])
                discount = rng.choice(DISCOUNTS) if quantity >= 10 else rng.choice(DISCOUNTS[:16])
                line_rows.append((order_id, product_index + 1, price, quantity, discount))
            if len(line_rows) == lines_before:
                # Every line was a discontinued product: sell a current one instead.
                product_index = rng.choice([i for i, p in enumerate(PRODUCTS) if not p[3]])
                price = round(PRODUCTS[product_index][2] * PRICE_INDEX[year], 2)
                line_rows.append((order_id, product_index + 1, price, rng.randint(1, 20), 0.0))
    return order_rows, line_rows


def build(path):
    rng = random.Random(SEED)
    customer_rows = customers(rng)
    order_rows, line_rows = orders(rng, customer_rows)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA)
        with connection:
            connection.executemany(
                "INSERT INTO categories VALUES (?, ?, ?)",
                [(i + 1, name, description) for i, (name, description) in enumerate(CATEGORIES)],
            )
            connection.executemany(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
                [(i + 1, n, c + 1, p, d) for i, (n, c, p, d) in enumerate(PRODUCTS)],
            )
            connection.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customer_rows)
            connection.executemany(
                "INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(i + 1, *row) for i, row in enumerate(EMPLOYEES)],
            )
            connection.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", order_rows)
            connection.executemany("INSERT INTO order_lines VALUES (?, ?, ?, ?, ?)", line_rows)
        connection.execute("ANALYZE")
        connection.commit()
    finally:
        connection.close()


def main(argv):
    if len(argv) != 2:
        print("usage: python3 scripts/demo-db.py OUT.db", file=sys.stderr)
        return 2
    out = os.path.abspath(argv[1])
    directory = os.path.dirname(out)
    fd, temp = tempfile.mkstemp(prefix=".demo-db-", suffix=".db", dir=directory)
    os.close(fd)
    try:
        os.unlink(temp)  # sqlite3 creates it afresh
        build(temp)
        os.replace(temp, out)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
