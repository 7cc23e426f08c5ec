-- Hidden test 1 of hr: two employees of the same name, department, manager and salary.
--
-- PostgreSQL database dump (pg_dump -n hr --no-owner), kept as a sample of the format.
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

CREATE SCHEMA hr;

SET default_tablespace = '';
SET default_table_access_method = heap;

CREATE TABLE hr.departments (
    id integer NOT NULL,
    name text NOT NULL,
    location text
);

CREATE TABLE hr.employees (
    id integer NOT NULL,
    name text NOT NULL,
    department_id integer,
    manager_id integer,
    salary numeric(10,2) NOT NULL,
    hired_on date NOT NULL
);

CREATE SEQUENCE hr.employees_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE hr.employees_id_seq OWNED BY hr.employees.id;

ALTER TABLE ONLY hr.employees ALTER COLUMN id SET DEFAULT nextval('hr.employees_id_seq'::regclass);

COPY hr.departments (id, name, location) FROM stdin;
1	Engineering	Berlin
2	Sales	Paris
3	Support	\N
4	Research	Berlin
\.

COPY hr.employees (id, name, department_id, manager_id, salary, hired_on) FROM stdin;
1	Alice	1	\N	9500.00	2019-04-01
2	Bob	1	1	7200.00	2020-01-15
3	Carla	1	1	7200.00	2021-06-01
4	Dan	2	\N	8100.00	2018-09-10
5	Eve	2	4	5400.00	2022-02-01
6	Farid	3	\N	4800.00	2020-11-23
7	Gita	3	6	4100.00	2023-03-13
8	Hans	1	2	6100.00	2023-08-01
9	Ines	\N	\N	3900.00	2024-01-08
10	Sam	3	6	4100.00	2024-02-01
11	Sam	3	6	4100.00	2024-02-02
\.

SELECT pg_catalog.setval('hr.employees_id_seq', 11, true);

ALTER TABLE ONLY hr.departments
    ADD CONSTRAINT departments_pkey PRIMARY KEY (id);

ALTER TABLE ONLY hr.employees
    ADD CONSTRAINT employees_pkey PRIMARY KEY (id);

ALTER TABLE ONLY hr.employees
    ADD CONSTRAINT employees_department_id_fkey FOREIGN KEY (department_id) REFERENCES hr.departments(id);

ALTER TABLE ONLY hr.employees
    ADD CONSTRAINT employees_manager_id_fkey FOREIGN KEY (manager_id) REFERENCES hr.employees(id);

--
-- PostgreSQL database dump complete
--
