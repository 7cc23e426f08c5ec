-- The dataset of scripts/bench's simple problem: the demo shop's customers alone.
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, country text NOT NULL);
INSERT INTO customers VALUES
    (1, 'Alice', 'UK'), (2, 'Bruno', 'FR'), (3, 'Chen', 'UK'), (4, 'Dana', 'US'),
    (5, 'Emil', 'DE'), (6, 'Fatima', 'UK'), (7, 'Goran', 'SE'), (8, 'Hana', 'JP');
