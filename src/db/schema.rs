// @generated automatically by Diesel CLI.

diesel::table! {
    auth_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Int8,
        kind -> Text,
        family -> Uuid,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    datasets (name) {
        name -> Text,
        script_sha256 -> Text,
        tables -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        script -> Nullable<Text>,
    }
}

diesel::table! {
    dataset_tests (dataset, test) {
        dataset -> Text,
        test -> Int2,
        script -> Text,
        script_sha256 -> Text,
        tables -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    fallback_submissions (id) {
        id -> Uuid,
        data -> Jsonb,
        created_at -> Timestamptz,
        claimed_until -> Nullable<Timestamptz>,
        attempts -> Int4,
    }
}

diesel::table! {
    first_solves (user_id, problem_id) {
        user_id -> Int8,
        problem_id -> Int8,
        submission_id -> Uuid,
        solved_at -> Timestamptz,
    }
}

diesel::table! {
    problems (id) {
        id -> Int8,
        slug -> Text,
        title -> Text,
        statement -> Text,
        topic -> Text,
        dataset -> Text,
        reference_sql -> Text,
        ordered -> Bool,
        writeable -> Bool,
        check_table -> Nullable<Text>,
        time_limit_ms -> Int4,
        expected_columns -> Jsonb,
        expected_rows -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        order_key -> Nullable<Array<Int2>>,
        feedback -> Text,
        generated_tests -> Int2,
        hidden_tests -> Jsonb,
        difficulty -> Text,
    }
}

diesel::table! {
    standings (user_id, topic) {
        user_id -> Int8,
        topic -> Text,
        score -> Int4,
        reached_at -> Timestamptz,
        reached_sec -> Int8,
        member -> Nullable<Text>,
    }
}

diesel::table! {
    submissions (id) {
        id -> Uuid,
        user_id -> Int8,
        problem_id -> Int8,
        sql_query -> Text,
        status -> Text,
        rows_returned -> Nullable<Int4>,
        expected_rows -> Nullable<Int4>,
        duration_ms -> Nullable<Int4>,
        message -> Nullable<Text>,
        sqlstate -> Nullable<Text>,
        diff -> Nullable<Jsonb>,
        cached -> Bool,
        queue -> Text,
        request_id -> Nullable<Text>,
        created_at -> Timestamptz,
        graded_at -> Nullable<Timestamptz>,
        reason -> Nullable<Text>,
        failed_test -> Nullable<Int2>,
        counterexample -> Nullable<Jsonb>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        email -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        created_at -> Timestamptz,
        last_seen_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(auth_tokens -> users (user_id));
diesel::joinable!(dataset_tests -> datasets (dataset));
diesel::joinable!(first_solves -> problems (problem_id));
diesel::joinable!(first_solves -> submissions (submission_id));
diesel::joinable!(first_solves -> users (user_id));
diesel::joinable!(problems -> datasets (dataset));
diesel::joinable!(standings -> users (user_id));
diesel::joinable!(submissions -> problems (problem_id));
diesel::joinable!(submissions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    auth_tokens,
    dataset_tests,
    datasets,
    fallback_submissions,
    first_solves,
    problems,
    standings,
    submissions,
    users,
);
