-- Hidden test 1 of shop: rows the sample lacks, so that the standard wrong queries fail here
-- (same names twice, a price at the exact average, a customer at exactly 100 spent, ties).
CREATE TABLE categories (
    id   integer PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE products (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    category_id integer REFERENCES categories (id),
    price       numeric(10, 2) NOT NULL,
    stock       integer NOT NULL DEFAULT 0
);

CREATE TABLE customers (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    city       text,
    country    text NOT NULL,
    joined_on  date NOT NULL
);

CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    ordered_at  timestamp NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled'))
);

CREATE TABLE order_items (
    order_id   integer NOT NULL REFERENCES orders (id),
    product_id integer NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

INSERT INTO categories VALUES (1, 'Books'), (2, 'Games'), (3, 'Music'), (4, 'Garden');

INSERT INTO products (name, category_id, price, stock) VALUES
    ('The SQL Handbook', 1, 43.00, 12),
    ('Mystery Box', NULL, 5.00, 50),
    ('Mystery Box', NULL, 5.00, 50),
    ('Apple Crate', 4, 6.00, 0),
    ('Bolt Cutter', 4, 6.00, 3),
    ('Watering Can', 4, 12.00, 0),
    ('Watering Can', 4, 12.00, 0),
    ('Query Quest', 2, 59.00, 5),
    ('Query Quest', 2, 59.00, 5),
    ('Even Keel', 3, 23.00, 7);

INSERT INTO customers (name, email, city, country, joined_on) VALUES
    ('Ada', 'ada@example.org', 'London', 'UK', '2024-01-15'),
    ('Ada', 'ada.b@example.org', 'Leeds', 'UK', '2024-01-20'),
    ('Chen', NULL, 'Shanghai', 'China', '2024-02-20'),
    ('Chen', NULL, 'Beijing', 'China', '2024-02-21'),
    ('Grace', '', 'New York', 'USA', '2024-06-18'),
    ('Hiro', 'hiro@example.org', 'Osaka', 'Japan', '2024-07-07');

INSERT INTO orders (customer_id, ordered_at, status) VALUES
    (1, '2024-06-01 10:00', 'delivered'),
    (2, '2024-06-01 10:00', 'delivered'),
    (3, '2024-03-01 09:00', 'pending'),
    (6, '2024-04-01 12:00', 'delivered'),
    (5, '2024-05-01 12:00', 'cancelled'),
    (4, '2024-05-02 12:00', 'shipped');

INSERT INTO order_items VALUES
    (1, 8, 2, 59.00),
    (2, 1, 3, 43.00),
    (3, 5, 1, 6.00),
    (4, 1, 2, 50.00),
    (5, 2, 1, 5.00),
    (6, 3, 1, 5.00);
