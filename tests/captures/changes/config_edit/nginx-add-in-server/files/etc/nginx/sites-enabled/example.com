server {
	listen 80;
	server_name example.com;
	root /var/www/example.com;

	location / {
		try_files $uri $uri/ /index.php?$args;
	}

	location ~ \.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
	}

	location /wp-content/uploads/ {
		expires 30d;
	}
}
