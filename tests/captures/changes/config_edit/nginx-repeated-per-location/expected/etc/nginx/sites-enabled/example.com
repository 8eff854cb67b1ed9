server {
	listen 80;
	server_name example.com;
	root /var/www/example.com;
	index index.php;

	location ~ ^/wp-admin/.*\.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 60s;
	}

	location = /wp-cron.php {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 600s;
	}

	location ~ \.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 60s;
	}
}
