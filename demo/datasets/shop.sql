-- A small web shop: customers, products, orders.
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
    ('The SQL Handbook', 1, 39.90, 12),
    ('Relational Poetry', 1, 14.50, 0),
    ('Query Quest', 2, 59.00, 5),
    ('Join the Dots', 2, 19.99, 30),
    ('Index of Songs', 3, 9.99, 100),
    ('Null and Void (LP)', 3, 24.00, 3),
    ('Rake', 4, 17.25, 8),
    ('Watering Can', 4, 12.00, 0),
    ('Mystery Box', NULL, 5.00, 50);

INSERT INTO customers (name, email, city, country, joined_on) VALUES
    ('Ada', 'ada@example.org', 'London', 'UK', '2024-01-15'),
    ('Brian', 'brian@example.org', 'Manchester', 'UK', '2024-02-03'),
    ('Chen', NULL, 'Shanghai', 'China', '2024-02-20'),
    ('Dolores', 'dolores@example.org', 'Madrid', 'Spain', '2024-03-11'),
    ('Edgar', 'edgar@example.org', NULL, 'USA', '2024-03-30'),
    ('Fatima', 'fatima@example.org', 'Casablanca', 'Morocco', '2024-05-02'),
    ('Grace', '', 'New York', 'USA', '2024-06-18'),
    ('Hiro', 'hiro@example.org', 'Osaka', 'Japan', '2024-07-07');

INSERT INTO orders (customer_id, ordered_at, status) VALUES
    (1, '2024-02-01 10:00', 'delivered'),
    (1, '2024-03-05 12:30', 'delivered'),
    (2, '2024-03-06 09:15', 'shipped'),
    (3, '2024-03-20 18:45', 'delivered'),
    (4, '2024-04-01 08:00', 'cancelled'),
    (4, '2024-04-02 08:05', 'delivered'),
    (5, '2024-04-15 14:00', 'pending'),
    (1, '2024-05-01 16:20', 'shipped'),
    (6, '2024-05-10 11:11', 'delivered'),
    (7, '2024-07-01 19:00', 'delivered'),
    (3, '2024-07-04 07:30', 'pending');

INSERT INTO order_items VALUES
    (1, 1, 1, 39.90), (1, 5, 2, 9.99),
    (2, 3, 1, 59.00),
    (3, 4, 2, 19.99), (3, 5, 1, 9.99),
    (4, 1, 1, 39.90), (4, 6, 1, 24.00), (4, 7, 1, 17.25),
    (5, 3, 1, 59.00),
    (6, 2, 3, 14.50),
    (7, 9, 4, 5.00),
    (8, 6, 1, 24.00), (8, 1, 2, 35.00),
    (9, 7, 2, 17.25), (9, 8, 1, 12.00),
    (10, 4, 1, 19.99),
    (11, 5, 5, 9.99);
